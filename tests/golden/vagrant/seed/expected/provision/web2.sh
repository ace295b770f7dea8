#!/usr/bin/env bash
# Provisioning of VM web2 (web) of relevo cluster "relevo",
# written by `relevo export vagrant` from the built-in default topology. Vagrant runs it as root.
# Idempotent: every step checks before it acts, so `vagrant provision` may run it again at any time.
set -euo pipefail
# Nothing here reads stdin: `lxc init` would read its configuration from it (Vagrant's shell provisioner
# leaves it open) and `lxc remote add` a password.
exec </dev/null

readonly FILES=/tmp/relevo-files/web2
readonly VMFILES=/tmp/relevo-vmfiles/web2
readonly IMAGE_DIR=/tmp/relevo-image
readonly BOX_IMAGE_DIR=/var/lib/relevo/images
readonly IMAGE=relevo/bookworm
readonly CONTAINER=relevo-web2
readonly BRIDGE=relevobr0
readonly POOL=default
export PATH="$PATH:/snap/bin"

step="start"
finish() {
    local status=$?
    # The uploaded files hold the stats credentials on the balancer: never left behind.
    rm -rf "$FILES" "$VMFILES" "$IMAGE_DIR"
    if [ "$status" -ne 0 ]; then
        echo "relevo: provisioning web2 FAILED at step: $step (exit status $status)" >&2
        # What the LXD daemon and the kernel said last, while the VM still exists: under load 20 an
        # `lxc init` once lost its daemon mid-unpack ("websocket: close 1006"), and nothing said why.
        echo "relevo: web2: the LXD daemon's last log lines, memory, and the kernel's OOM kills:" >&2
        journalctl -u lxd.service -u snap.lxd.daemon.service -n 15 --no-pager >&2 2>/dev/null || true
        free -m >&2 || true
        dmesg 2>/dev/null | grep -iE 'out of memory|oom-kill|killed process' | tail -n 5 >&2 || true
        # Said on the container too: the balancer's VM, waiting for this one, stops waiting.
        lxc config set "$CONTAINER" user.relevo.provisioned="failed at: $step" >/dev/null 2>&1 || true
    fi
}
trap finish EXIT
begin() {
    step=$1
    echo "relevo: web2: $step"
}

begin "install LXD"
# relevo's box has it all (`relevo box build`); a public box (the seed's debian/bookworm64) gets it here.
if ! command -v lxc >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends lxd dnsmasq-base iptables
fi

begin "wait for the LXD daemon"
lxd waitready --timeout=120

begin "files of the VM"
# install_file PATH MODE: the uploaded file to the same path on the VM, when it differs.
vm_changed=0
install_file() {
    local path=$1 mode=$2
    if cmp -s "$VMFILES$path" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then
        return 0
    fi
    install -D -m "$mode" "$VMFILES$path" "$path"
    vm_changed=1
}
install_file /etc/relevo/lxd/server.crt 0644
install_file /etc/relevo/lxd/server.key 0600
install_file /etc/relevo/lxd/controller.crt 0644
if [ "$vm_changed" = 1 ]; then
    echo "relevo: web2: the LXD certificates were updated"
fi

begin "LXD over HTTPS on 192.168.100.4:8443 with its own certificate, trusting the controller's"
lxd_dir=""
for dir in /var/lib/lxd /var/snap/lxd/common/lxd; do
    if [ -d "$dir" ]; then
        lxd_dir=$dir
        break
    fi
done
if [ -z "$lxd_dir" ]; then
    echo "relevo: no LXD directory (/var/lib/lxd or /var/snap/lxd/common/lxd)" >&2
    exit 1
fi
if ! cmp -s /etc/relevo/lxd/server.crt "$lxd_dir/server.crt" || ! cmp -s /etc/relevo/lxd/server.key "$lxd_dir/server.key"; then
    install -m 0644 /etc/relevo/lxd/server.crt "$lxd_dir/server.crt"
    install -m 0600 /etc/relevo/lxd/server.key "$lxd_dir/server.key"
    # LXD reads its server certificate when it starts (nothing runs in it yet on a first provisioning).
    if systemctl cat snap.lxd.daemon.service >/dev/null 2>&1; then
        systemctl restart snap.lxd.daemon.service
    else
        systemctl restart lxd.service
    fi
    lxd waitready --timeout=120
fi
if [ "$(lxc config get core.https_address)" != 192.168.100.4:8443 ]; then
    lxc config set core.https_address 192.168.100.4:8443
fi
if ! lxc config trust list --format csv | grep -q a29d3f170a86; then
    lxc config trust add local: /etc/relevo/lxd/controller.crt </dev/null
fi

begin "storage pool $POOL"
if ! lxc storage show "$POOL" >/dev/null 2>&1; then
    lxc storage create "$POOL" dir
fi

begin "bridge $BRIDGE 10.210.2.1/24 (NAT off)"
if ! lxc network show "$BRIDGE" >/dev/null 2>&1; then
    lxc network create "$BRIDGE" ipv4.address=10.210.2.1/24 ipv4.nat=false \
        ipv4.dhcp=false ipv4.firewall=false ipv4.routing=false ipv6.address=none
elif [ "$(lxc network get "$BRIDGE" ipv4.address)" != 10.210.2.1/24 ]; then
    lxc network set "$BRIDGE" ipv4.address=10.210.2.1/24
fi

begin "route back to the balancer's container 10.210.0.0/24 via 192.168.100.2"
route_unit="[Unit]
Description=relevo: route to the balancer's container subnet through the balancer's VM
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip route replace 10.210.0.0/24 via 192.168.100.2

[Install]
WantedBy=multi-user.target"
if [ "$(cat /etc/systemd/system/relevo-route.service 2>/dev/null || true)" != "$route_unit" ]; then
    printf '%s\n' "$route_unit" >/etc/systemd/system/relevo-route.service
    systemctl daemon-reload
fi
systemctl enable --now relevo-route.service
if ! ip route show 10.210.0.0/24 | grep -q "via 192.168.100.2"; then
    ip route replace 10.210.0.0/24 via 192.168.100.2
fi

begin "image $IMAGE"
if ! lxc image info "$IMAGE" >/dev/null 2>&1; then
    # One uploaded by `export --image`, else the one the box carries (`relevo box build` puts it there).
    tarball=""
    for dir in "$IMAGE_DIR" "$BOX_IMAGE_DIR"; do
        if [ -d "$dir" ]; then
            tarball=$(find "$dir" -maxdepth 1 -name '*.tar*' -print -quit)
        fi
        if [ -n "$tarball" ]; then
            break
        fi
    done
    if [ -z "$tarball" ]; then
        echo "relevo: LXD has no image $IMAGE, the box carries none in $BOX_IMAGE_DIR and none was" \
            "uploaded; build one with \`relevo image build --no-import\` and export with --image FILE" >&2
        exit 1
    fi
    lxc image import "$tarball" --alias "$IMAGE"
fi

begin "container $CONTAINER"
if ! lxc info "$CONTAINER" >/dev/null 2>&1; then
    # systemd inside the container needs nesting; no profile: its root disk and NIC are added here.
    lxc init "$IMAGE" "$CONTAINER" --no-profiles --storage "$POOL" -c security.nesting=true
fi
# The cluster's mark, as the lxd provider sets it: the controller's relevo (scenarios, status) then knows
# the container for its own.
if [ "$(lxc config get "$CONTAINER" user.relevo.cluster)" != a9acdce94d086df4 ]; then
    lxc config set "$CONTAINER" user.relevo.cluster=a9acdce94d086df4
fi
if ! lxc config device get "$CONTAINER" root type >/dev/null 2>&1; then
    lxc config device add "$CONTAINER" root disk path=/ pool="$POOL"
fi
# Named cnet0, not eth0: a container NIC named like the VM's took the VM's network down on stop.
if ! lxc config device get "$CONTAINER" cnet0 type >/dev/null 2>&1; then
    lxc config device add "$CONTAINER" cnet0 nic nictype=bridged parent="$BRIDGE" name=cnet0
fi

begin "files into $CONTAINER"
changed=0
# push_file PATH MODE: the uploaded file to the same path in the container, when it differs.
push_file() {
    local path=$1 mode=$2
    if lxc file pull "$CONTAINER$path" - 2>/dev/null | cmp -s - "$FILES$path"; then
        return 0
    fi
    lxc file push --create-dirs --mode "$mode" "$FILES$path" "$CONTAINER$path"
    changed=1
}
push_file /etc/network/interfaces.d/cnet0 0644
push_file /var/www/relevo/health 0644
push_file /var/www/relevo/index.html 0644
push_file /etc/relevo/apache/httpd.conf 0644
push_file /etc/systemd/system/relevo-apache.service 0644

# add_proxy NAME KEY=VALUE...: the container's proxy device NAME, made anew. LXD gives the device's
# forkproxy a few seconds to start, which a busy emulated VM can miss ("Failed to start device", seen
# once in CI): three tries.
add_proxy() {
    local name=$1 attempt
    shift
    for attempt in 1 2 3; do
        lxc config device remove "$CONTAINER" "$name" >/dev/null 2>&1 || true
        if lxc config device add "$CONTAINER" "$name" proxy "$@"; then
            return 0
        fi
        echo "relevo: web2: the proxy device $name did not start (try $attempt of 3)" >&2
        sleep 5
    done
    return 1
}

begin "start $CONTAINER"
if [ "$(lxc list "^$CONTAINER\$" --format csv -c s)" != RUNNING ]; then
    lxc start "$CONTAINER"
    started=1
else
    started=0
fi

# wait_for_systemd BOUND_S: until the container's systemd answers with a settled state, "running" or
# "degraded" (a failed unit of the image is not ours), or a failure after BOUND_S naming its last answer.
# `is-system-running --wait` waits out the boot itself, but returns at once ("Failed to connect to bus")
# while systemd's private socket does not exist yet: the next step's systemctl needs that bus answering.
wait_for_systemd() {
    local bound=$1 answer="" left
    local deadline=$((SECONDS + bound))
    while :; do
        left=$((deadline - SECONDS))
        # It exits 0 for "running" only; any other exit leaves its answer (or the bus error) to decide.
        answer=$(timeout "$((left > 1 ? left : 1))" lxc exec "$CONTAINER" -- \
            systemctl is-system-running --wait 2>&1) && return 0
        if [ "${answer##*$'\n'}" = degraded ]; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "relevo: systemd in $CONTAINER did not come up within $bound s;" \
                "its last answer: ${answer:-nothing}" >&2
            return 1
        fi
        sleep 1
    done
}

begin "wait for systemd in $CONTAINER"
wait_for_systemd 300

begin "relevo-apache.service in $CONTAINER"
# One `lxc exec` for the whole step (each costs seconds under emulation); the script comes on stdin.
lxc exec "$CONTAINER" --env CHANGED="$changed" --env STARTED="$started" -- sh -eu <<'IN_CONTAINER'
mkdir -p /etc/relevo/apache /var/www/relevo /run/relevo-apache /var/log/relevo-apache
apache2 -t -f /etc/relevo/apache/httpd.conf
# enabled UNIT: whether systemctl says UNIT is enabled (is-enabled exits 1 for every other state); no
# answer at all, its bus not answering, is a failure, not "disabled".
enabled() {
    state=$(systemctl is-enabled "$1" 2>/dev/null) || :
    if [ -z "$state" ]; then
        echo "relevo: systemctl gave no state for $1" >&2
        exit 1
    fi
    [ "$state" = enabled ]
}
if enabled apache2.service; then
    systemctl disable --now apache2.service
fi
if enabled haproxy.service; then
    systemctl disable --now haproxy.service
fi
if [ "$CHANGED" = 1 ]; then
    systemctl daemon-reload
fi
if ! enabled relevo-apache.service; then
    systemctl enable relevo-apache.service
fi
if ! systemctl is-active --quiet relevo-apache.service; then
    systemctl restart relevo-apache.service
elif [ "$CHANGED" = 1 ] && [ "$STARTED" = 0 ]; then
    systemctl reload-or-restart relevo-apache.service
fi
# The next steps expose it: active now, or a failure that shows why.
if ! systemctl is-active --quiet relevo-apache.service; then
    systemctl status --no-pager --lines=20 relevo-apache.service >&2 || true
    echo "relevo: relevo-apache.service is not active after its start" >&2
    exit 1
fi
IN_CONTAINER

begin "expose Apache on tcp:192.168.100.4:8080"
# An LXD proxy device, replaced when it differs.
if [ "$(lxc config device get "$CONTAINER" relevo-http listen 2>/dev/null || true)" != tcp:192.168.100.4:8080 ] \
    || [ "$(lxc config device get "$CONTAINER" relevo-http connect 2>/dev/null || true)" != tcp:127.0.0.1:8080 ]; then
    add_proxy relevo-http listen=tcp:192.168.100.4:8080 connect=tcp:127.0.0.1:8080
fi

begin "mark $CONTAINER provisioned (the balancer's VM waits for it)"
if [ "$(lxc config get "$CONTAINER" user.relevo.provisioned)" != 1 ]; then
    lxc config set "$CONTAINER" user.relevo.provisioned=1
fi

step="done"
echo "relevo: web2: provisioned (web at 192.168.100.4:8080)"
