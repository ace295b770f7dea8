"""Finding the cgroup cpu controller: v1 or v2, or none."""

from __future__ import annotations

import pytest

from relevo.providers.cpu_quota import CpuCgroups, CpuQuotaError, Layout


def test_v1_is_found_by_its_cpu_hierarchy(tmp_path):
    """A `cpu` v1 hierarchy (cpu.cfs_quota_us) is chosen first."""
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    found = CpuCgroups.detect(tmp_path)
    assert found == CpuCgroups(Layout.V1, tmp_path / "cpu")


def test_v2_is_found_when_the_unified_root_offers_cpu(tmp_path):
    """A unified hierarchy lists `cpu` in cgroup.controllers; without it there is no controller."""
    (tmp_path / "cgroup.controllers").write_text("cpuset io memory pids\n")
    assert CpuCgroups.detect(tmp_path) is None
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert CpuCgroups.detect(tmp_path) == CpuCgroups(Layout.V2, tmp_path)


def test_groups_are_per_state_directory_and_refuse_unsafe_names(tmp_path):
    """Two clusters with one name get different groups; a name that could climb the tree is refused."""
    cgroups = CpuCgroups(Layout.V1, tmp_path)
    a = cgroups.group("relevo", tmp_path / "a", "web1")
    b = cgroups.group("relevo", tmp_path / "b", "web1")
    assert a != b and a.name == b.name == "web1"
    assert a.parent.parent == tmp_path
    with pytest.raises(CpuQuotaError):
        cgroups.group("relevo", tmp_path, "../../etc")
