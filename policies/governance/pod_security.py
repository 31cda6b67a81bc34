"""Kubernetes Pod Security Standards, `baseline` and `restricted`, over a pod spec.

Each control is the one the Pod Security Standards page defines (kubernetes/website,
content/en/docs/concepts/security/pod-security-standards.md; the `latest` version this project's
namespaces enforce): the field it reads, the values it allows. `violations` names the field and the
value for each failed control, the way Pod Security Admission would refuse the pod.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from .resources import mapping, sequence

Level = Literal["baseline", "restricted"]

#: Capabilities baseline lets a container add.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
#: Sysctls baseline allows (the namespaced, safe set).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
#: Volume types restricted allows.
RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SECCOMP_RESTRICTED = frozenset({"RuntimeDefault", "Localhost"})


def containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(field path, container) for every container, init container and ephemeral container of a pod spec."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(sequence(pod.get(key))):
            yield f"{key}[{i}]", mapping(container)


def _baseline(pod: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field) is True:
            yield field, True, "host namespaces are not allowed"
    for i, volume in enumerate(sequence(pod.get("volumes"))):
        if "hostPath" in mapping(volume):
            yield f"volumes[{i}].hostPath", volume["hostPath"], "hostPath volumes are not allowed"
    pod_ctx = mapping(pod.get("securityContext"))
    for i, sysctl in enumerate(sequence(pod_ctx.get("sysctls"))):
        name = mapping(sysctl).get("name")
        if not isinstance(name, str) or name not in SAFE_SYSCTLS:
            yield f"securityContext.sysctls[{i}].name", name, f"allowed: {sorted(SAFE_SYSCTLS)}"
    contexts = [("securityContext", pod_ctx)] + [
        (f"{path}.securityContext", mapping(c.get("securityContext"))) for path, c in containers(pod)
    ]
    for path, ctx in contexts:
        seccomp = mapping(ctx.get("seccompProfile")).get("type")
        if seccomp == "Unconfined":
            yield f"{path}.seccompProfile.type", seccomp, "allowed: RuntimeDefault, Localhost"
        apparmor = mapping(ctx.get("appArmorProfile")).get("type")
        if apparmor == "Unconfined":
            yield f"{path}.appArmorProfile.type", apparmor, "allowed: RuntimeDefault, Localhost"
        selinux = mapping(ctx.get("seLinuxOptions"))
        if not isinstance(selinux.get("type", ""), str) or selinux.get("type", "") not in SELINUX_TYPES:
            yield f"{path}.seLinuxOptions.type", selinux["type"], f"allowed: {sorted(t for t in SELINUX_TYPES if t)}"
        for field in ("user", "role"):
            if selinux.get(field):
                yield f"{path}.seLinuxOptions.{field}", selinux[field], "must not be set"
    for path, c in containers(pod):
        ctx = mapping(c.get("securityContext"))
        if ctx.get("privileged") is True:
            yield f"{path}.securityContext.privileged", True, "privileged containers are not allowed"
        added = [str(a) for a in sequence(mapping(ctx.get("capabilities")).get("add"))]
        extra = sorted(set(added) - BASELINE_CAPABILITIES)
        if extra:
            yield f"{path}.securityContext.capabilities.add", extra, "only the baseline capability set"
        if ctx.get("procMount", "Default") != "Default":
            yield f"{path}.securityContext.procMount", ctx["procMount"], "allowed: Default"
        for j, port in enumerate(sequence(c.get("ports"))):
            if mapping(port).get("hostPort", 0):
                yield f"{path}.ports[{j}].hostPort", port["hostPort"], "host ports are not allowed"


def _restricted(pod: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    for i, volume in enumerate(sequence(pod.get("volumes"))):
        kinds = sorted(str(k) for k in set(mapping(volume)) - {"name"})
        if kinds and kinds[0] not in RESTRICTED_VOLUMES:
            yield f"volumes[{i}]", kinds[0], f"allowed volume types: {sorted(RESTRICTED_VOLUMES)}"
    pod_ctx = mapping(pod.get("securityContext"))
    if pod_ctx.get("runAsUser") == 0:
        yield "securityContext.runAsUser", 0, "must not be 0"
    for path, c in containers(pod):
        ctx = mapping(c.get("securityContext"))
        if ctx.get("allowPrivilegeEscalation") is not False:
            yield (
                f"{path}.securityContext.allowPrivilegeEscalation",
                ctx.get("allowPrivilegeEscalation"),
                "must be false",
            )
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            yield f"{path}.securityContext.runAsNonRoot", ctx.get("runAsNonRoot"), "must be true (here or on the pod)"
        if ctx.get("runAsUser") == 0:
            yield f"{path}.securityContext.runAsUser", 0, "must not be 0"
        seccomp = mapping(ctx.get("seccompProfile") or pod_ctx.get("seccompProfile")).get("type")
        if not isinstance(seccomp, str) or seccomp not in SECCOMP_RESTRICTED:
            yield (
                f"{path}.securityContext.seccompProfile.type",
                seccomp,
                "RuntimeDefault or Localhost (here or on the pod)",
            )
        capabilities = mapping(ctx.get("capabilities"))
        if "ALL" not in sequence(capabilities.get("drop")):
            yield f"{path}.securityContext.capabilities.drop", capabilities.get("drop"), "must include ALL"
        extra = sorted({str(a) for a in sequence(capabilities.get("add"))} - {"NET_BIND_SERVICE"})
        if extra:
            yield f"{path}.securityContext.capabilities.add", extra, "only NET_BIND_SERVICE may be added"


def violations(pod: Mapping[str, Any], level: Level = "restricted") -> list[tuple[str, Any, str]]:
    """(field, value, what is allowed) for every control of `level` the pod spec fails."""
    found = list(_baseline(pod))
    if level == "restricted":
        found += list(_restricted(pod))
    return found
