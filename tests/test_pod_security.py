"""The Pod Security Standards checker: each control refuses what the standard refuses and admits the rest."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelyard.policies.governance.pod_security import violations

COMPLIANT: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "volumes": [{"name": "tmp", "emptyDir": {}}],
    "containers": [
        {
            "name": "app",
            "ports": [{"containerPort": 8080}],
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
    ],
}


def test_a_hardened_pod_passes_both_levels() -> None:
    assert violations(COMPLIANT, "restricted") == []
    assert violations(COMPLIANT, "baseline") == []


@pytest.mark.parametrize(
    ("path", "value", "field", "level"),
    [
        (("hostNetwork",), True, "hostNetwork", "baseline"),
        (("hostPID",), True, "hostPID", "baseline"),
        (("volumes",), [{"name": "h", "hostPath": {"path": "/"}}], "volumes[0].hostPath", "baseline"),
        (
            ("containers", 0, "ports"),
            [{"containerPort": 80, "hostPort": 80}],
            "containers[0].ports[0].hostPort",
            "baseline",
        ),
        (
            ("containers", 0, "securityContext", "privileged"),
            True,
            "containers[0].securityContext.privileged",
            "baseline",
        ),
        (
            ("containers", 0, "securityContext", "capabilities", "add"),
            ["SYS_ADMIN"],
            "containers[0].securityContext.capabilities.add",
            "baseline",
        ),
        (
            ("securityContext", "seccompProfile"),
            {"type": "Unconfined"},
            "securityContext.seccompProfile.type",
            "baseline",
        ),
        (
            ("containers", 0, "securityContext", "procMount"),
            "Unmasked",
            "containers[0].securityContext.procMount",
            "baseline",
        ),
        (
            ("securityContext", "sysctls"),
            [{"name": "kernel.msgmax", "value": "1"}],
            "securityContext.sysctls[0].name",
            "baseline",
        ),
        (("securityContext", "seLinuxOptions"), {"type": "spc_t"}, "securityContext.seLinuxOptions.type", "baseline"),
        (
            ("containers", 0, "securityContext", "allowPrivilegeEscalation"),
            True,
            "containers[0].securityContext.allowPrivilegeEscalation",
            "restricted",
        ),
        (("securityContext", "runAsNonRoot"), False, "containers[0].securityContext.runAsNonRoot", "restricted"),
        (
            ("containers", 0, "securityContext", "capabilities", "drop"),
            [],
            "containers[0].securityContext.capabilities.drop",
            "restricted",
        ),
        (("volumes",), [{"name": "n", "nfs": {"server": "x", "path": "/"}}], "volumes[0]", "restricted"),
    ],
)
def test_each_control_names_the_field_it_refuses(path: tuple[Any, ...], value: Any, field: str, level: str) -> None:
    pod = copy.deepcopy(COMPLIANT)
    target: Any = pod
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    found = [f for f, _, _ in violations(pod, "restricted")]
    assert field in found, found
    if level == "baseline":
        assert field in [f for f, _, _ in violations(pod, "baseline")]
    else:
        assert violations(pod, "baseline") == []
