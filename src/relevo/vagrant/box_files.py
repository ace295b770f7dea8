"""What `relevo box build` writes into the box's root file system and next to its disk: pure text, so
the cache key can hash it and the unit tests can read it."""

from __future__ import annotations

import json

VAGRANT_USER = "vagrant"
ROOT_LABEL = "relevo-root"
# Where the box carries the container image's tarball (its file name says which build): each VM's
# provisioning imports it into its LXD from there, so no VM needs it uploaded.
BOX_IMAGE_DIR = "/var/lib/relevo/images"

# The first NIC (vagrant-libvirt's management network) comes up by DHCP on any name the kernel gives it.
# "99-" sorts after the 50-vagrant-*.network files Vagrant writes for private networks: systemd-networkd
# uses the first file that matches, so Vagrant's static addresses win on their NICs.
NETWORKD_DHCP = """[Match]
Name=en* eth*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseDNS=no
"""

# Every VM made from the box would share the host keys generated at build time: they are removed and
# made on first boot, before sshd starts.
SSH_HOST_KEYS_UNIT = """[Unit]
Description=Generate SSH host keys missing on first boot (relevo box)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""

SUDOERS = f"{VAGRANT_USER} ALL=(ALL) NOPASSWD: ALL\nDefaults:{VAGRANT_USER} !requiretty\n"

# Keep the box small now and after: no documentation, manual pages or translations, and apt keeps no
# downloaded packages.
DPKG_EXCLUDES = """path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
"""
APT_NO_CACHE = 'APT::Keep-Downloaded-Packages "false";\nBinary::apt::APT::Keep-Downloaded-Packages "false";\n'
EMPTIED_DIRS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
)

# No udev at build time, so nothing else names the root device: the kernel finds it by file system UUID
# (the initramfs resolves UUID= with blkid). The serial console makes a failed boot readable with
# `virsh console`; net.ifnames=0 keeps the names eth0, eth1... that Vagrant's docs and the tier expect.
KERNEL_ARGS = "ro console=tty0 console=ttyS0,115200 net.ifnames=0 quiet"


def extlinux_conf(kernel: str, initrd: str, root_uuid: str) -> str:
    return (
        "DEFAULT linux\nPROMPT 0\nTIMEOUT 0\n\nLABEL linux\n"
        f"  LINUX /boot/{kernel}\n  INITRD /boot/{initrd}\n  APPEND root=UUID={root_uuid} {KERNEL_ARGS}\n"
    )


def fstab(root_uuid: str) -> str:
    return f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n"


def hosts(hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def metadata_json(virtual_size_gib: int) -> str:
    """vagrant-libvirt's box metadata: a qcow2 disk of this virtual size."""
    return json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": virtual_size_gib}) + "\n"


# The box's own Vagrantfile, merged under the user's: the settings every VM from this box needs. No
# /vagrant synced folder (vagrant-libvirt's default is NFS, which needs the host's NFS server and
# reaches out of the isolated network); the insecure key is replaced by a per-VM key on first `up`.
BOX_VAGRANTFILE = """# The relevo box's Vagrantfile (Debian bookworm with LXD), merged under the project's.
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.ssh.username = "vagrant"
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
  end
end
"""
