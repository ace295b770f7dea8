"""netem detection without touching an interface: a loaded module, the kernel's configuration (=y, =m with
or without its module file, not set), or nothing readable."""

from __future__ import annotations

import gzip

from relevo.providers.netem import detect


def test_netem_is_found_from_the_kernels_own_configuration(tmp_path):
    """Loaded module: available. Config `=y`: available; `=m` with its module file: available, without:
    not; `# ... is not set` (this machine's): not, and the reason names the option and the file."""
    absent = tmp_path / "no-module"
    loaded = tmp_path / "sch_netem"
    loaded.mkdir()
    assert detect(sys_module=loaded, configs=()).available

    def config(text: str):
        path = tmp_path / "config.gz"
        with gzip.open(path, "wt") as out:
            out.write("CONFIG_NET_SCH_HTB=y\n" + text)
        return (path,)

    assert detect(sys_module=absent, configs=config("CONFIG_NET_SCH_NETEM=y\n")).available
    modules = tmp_path / "modules"
    (modules / "kernel" / "net" / "sched").mkdir(parents=True)
    without = detect(sys_module=absent, configs=config("CONFIG_NET_SCH_NETEM=m\n"), modules=modules)
    assert not without.available and "no module file" in without.why
    (modules / "kernel" / "net" / "sched" / "sch_netem.ko.xz").write_bytes(b"")
    assert detect(sys_module=absent, configs=config("CONFIG_NET_SCH_NETEM=m\n"), modules=modules).available
    unset = detect(sys_module=absent, configs=config("# CONFIG_NET_SCH_NETEM is not set\n"))
    assert not unset.available
    assert unset.describe() == f"no netem (CONFIG_NET_SCH_NETEM is not set in {tmp_path / 'config.gz'})"
    assert not detect(sys_module=absent, configs=(tmp_path / "missing",)).available
