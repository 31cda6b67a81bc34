"""`pulumi up -C workloads -s <env>` runs this."""

from modelyard.programs import run_workloads

run_workloads()
