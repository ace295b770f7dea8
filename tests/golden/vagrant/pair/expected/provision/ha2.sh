#!/usr/bin/env bash
# Provisioning of VM ha2 (balancer) of relevo cluster "pair",
# written by `relevo export vagrant` from /srv/relevo.yaml. Vagrant runs it as root.
# Idempotent: every step checks before it acts, so `vagrant provision` may run it again at any time.
set -euo pipefail
# Nothing here reads stdin: `lxc init` would read its configuration from it (Vagrant's shell provisioner
# leaves it open) and `lxc remote add` a password.
exec </dev/null

readonly FILES=/tmp/relevo-files/ha2
readonly VMFILES=/tmp/relevo-vmfiles/ha2
readonly IMAGE_DIR=/tmp/relevo-image
readonly BOX_IMAGE_DIR=/var/lib/relevo/images
readonly IMAGE=relevo/bookworm
readonly CONTAINER=pair-ha2
readonly BRIDGE=relevobr0
readonly POOL=default
readonly RUNTIME_DIR=/tmp/relevo-runtime
export PATH="$PATH:/snap/bin"

step="start"
finish() {
    local status=$?
    # The uploaded files hold the stats credentials on the balancer: never left behind.
    rm -rf "$FILES" "$VMFILES" "$IMAGE_DIR" "$RUNTIME_DIR"
    if [ "$status" -ne 0 ]; then
        echo "relevo: provisioning ha2 FAILED at step: $step (exit status $status)" >&2
        # What the LXD daemon and the kernel said last, while the VM still exists: under load 20 an
        # `lxc init` once lost its daemon mid-unpack ("websocket: close 1006"), and nothing said why.
        echo "relevo: ha2: the LXD daemon's last log lines, memory, and the kernel's OOM kills:" >&2
        journalctl -u lxd.service -u snap.lxd.daemon.service -n 15 --no-pager >&2 2>/dev/null || true
        free -m >&2 || true
        dmesg 2>/dev/null | grep -iE 'out of memory|oom-kill|killed process' | tail -n 5 >&2 || true
    fi
}
trap finish EXIT
begin() {
    step=$1
    echo "relevo: ha2: $step"
}

begin "install LXD"
# relevo's box has it all (`relevo box build`); a public box (the seed's debian/bookworm64) gets it here.
if ! command -v lxc >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends lxd dnsmasq-base iptables keepalived
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
install_file /var/lib/relevo-controller/relevo.yaml 0644
install_file /etc/systemd/system/relevo-watch-pair.service 0644
install_file /etc/systemd/system/relevo-watch-pair.service.d/lxd.conf 0644
install_file /var/lib/relevo-controller/lxc/config.yml 0644
install_file /var/lib/relevo-controller/lxc/client.crt 0644
install_file /var/lib/relevo-controller/lxc/client.key 0600
install_file /var/lib/relevo-controller/lxc/servercerts/web1.crt 0644
install_file /var/lib/relevo-controller/lxc/servercerts/web2.crt 0644
install_file /var/lib/relevo-controller/lxc/servercerts/web1bck.crt 0644
install_file /var/lib/relevo-controller/lxc/servercerts/web2bck.crt 0644
install_file /usr/local/bin/relevo 0755
install_file /etc/keepalived/keepalived.conf 0644
install_file /usr/local/sbin/relevo-haproxy-check 0755
install_file /etc/systemd/system/relevo-haproxy-check.service 0644
install_file /etc/systemd/system/keepalived.service.d/relevo.conf 0644
install_file /usr/local/sbin/relevo-vrrp-notify 0755
install_file /var/lib/relevo-controller/vrrp-charge.json 0644
install_file /etc/systemd/system/relevo-watch-pair.service.d/vrrp.conf 0644

begin "storage pool $POOL"
if ! lxc storage show "$POOL" >/dev/null 2>&1; then
    lxc storage create "$POOL" dir
fi

begin "bridge $BRIDGE 10.210.5.1/24 (NAT off)"
if ! lxc network show "$BRIDGE" >/dev/null 2>&1; then
    lxc network create "$BRIDGE" ipv4.address=10.210.5.1/24 ipv4.nat=false \
        ipv4.dhcp=false ipv4.firewall=false ipv4.routing=false ipv6.address=none
elif [ "$(lxc network get "$BRIDGE" ipv4.address)" != 10.210.5.1/24 ]; then
    lxc network set "$BRIDGE" ipv4.address=10.210.5.1/24
fi

begin "forward the container's traffic to the web VMs"
if [ "$(cat /etc/sysctl.d/60-relevo.conf 2>/dev/null || true)" != "net.ipv4.ip_forward = 1" ]; then
    echo "net.ipv4.ip_forward = 1" >/etc/sysctl.d/60-relevo.conf
fi
if [ "$(sysctl -n net.ipv4.ip_forward)" != 1 ]; then
    sysctl -q -w net.ipv4.ip_forward=1
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
if [ "$(lxc config get "$CONTAINER" user.relevo.cluster)" != fc45befb61385cc1 ]; then
    lxc config set "$CONTAINER" user.relevo.cluster=fc45befb61385cc1
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
push_file /etc/haproxy/errors/relevo-503.http 0644
push_file /etc/haproxy/haproxy.cfg 0600
push_file /etc/systemd/system/haproxy.service.d/relevo.conf 0644

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
        echo "relevo: ha2: the proxy device $name did not start (try $attempt of 3)" >&2
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

begin "haproxy.service in $CONTAINER"
# One `lxc exec` for the whole step (each costs seconds under emulation); the script comes on stdin.
lxc exec "$CONTAINER" --env CHANGED="$changed" --env STARTED="$started" -- sh -eu <<'IN_CONTAINER'
mkdir -p /etc/haproxy /etc/haproxy/errors /var/lib/haproxy
haproxy -c -q -f /etc/haproxy/haproxy.cfg
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
if [ "$CHANGED" = 1 ]; then
    systemctl daemon-reload
fi
if ! enabled haproxy.service; then
    systemctl enable haproxy.service
fi
if ! systemctl is-active --quiet haproxy.service; then
    systemctl restart haproxy.service
elif [ "$CHANGED" = 1 ] && [ "$STARTED" = 0 ]; then
    systemctl reload-or-restart haproxy.service
fi
# The next steps expose it: active now, or a failure that shows why.
if ! systemctl is-active --quiet haproxy.service; then
    systemctl status --no-pager --lines=20 haproxy.service >&2 || true
    echo "relevo: haproxy.service is not active after its start" >&2
    exit 1
fi
IN_CONTAINER

begin "expose the frontend on tcp:0.0.0.0:8080"
# An LXD proxy device, replaced when it differs.
if [ "$(lxc config device get "$CONTAINER" relevo-frontend listen 2>/dev/null || true)" != tcp:0.0.0.0:8080 ] \
    || [ "$(lxc config device get "$CONTAINER" relevo-frontend connect 2>/dev/null || true)" != tcp:127.0.0.1:8080 ]; then
    add_proxy relevo-frontend listen=tcp:0.0.0.0:8080 connect=tcp:127.0.0.1:8080
fi

begin "expose the stats GUI on tcp:192.168.100.7:8404"
# An LXD proxy device, replaced when it differs.
if [ "$(lxc config device get "$CONTAINER" relevo-stats listen 2>/dev/null || true)" != tcp:192.168.100.7:8404 ] \
    || [ "$(lxc config device get "$CONTAINER" relevo-stats connect 2>/dev/null || true)" != tcp:127.0.0.1:8404 ]; then
    add_proxy relevo-stats listen=tcp:192.168.100.7:8404 connect=tcp:127.0.0.1:8404
fi

begin "expose the stats GUI on tcp:127.0.0.1:8404"
# An LXD proxy device, replaced when it differs.
if [ "$(lxc config device get "$CONTAINER" relevo-stats-lo listen 2>/dev/null || true)" != tcp:127.0.0.1:8404 ] \
    || [ "$(lxc config device get "$CONTAINER" relevo-stats-lo connect 2>/dev/null || true)" != tcp:127.0.0.1:8404 ]; then
    add_proxy relevo-stats-lo listen=tcp:127.0.0.1:8404 connect=tcp:127.0.0.1:8404
fi

begin "expose HAProxy's Runtime API to the controller on unix:/var/lib/relevo-controller/.relevo/haproxy/admin.sock"
# An LXD proxy device, replaced when it differs.
install -d -m 0700 /var/lib/relevo-controller/.relevo/haproxy
if [ "$(lxc config device get "$CONTAINER" relevo-runtime listen 2>/dev/null || true)" != unix:/var/lib/relevo-controller/.relevo/haproxy/admin.sock ] \
    || [ "$(lxc config device get "$CONTAINER" relevo-runtime connect 2>/dev/null || true)" != unix:/run/haproxy/admin.sock ]; then
    add_proxy relevo-runtime listen=unix:/var/lib/relevo-controller/.relevo/haproxy/admin.sock connect=unix:/run/haproxy/admin.sock mode=0600 uid=0 gid=0
fi

begin "relevo's runtime in /opt/relevo (uploaded: no pip, no network)"
bundle="$RUNTIME_DIR/relevo-runtime.tar.gz"
if [ -f "$bundle" ]; then
    digest=$(sha256sum "$bundle" | cut -d " " -f 1)
    if [ "$(cat /opt/relevo/bundle.sha256 2>/dev/null || true)" != "$digest" ]; then
        rm -rf /opt/relevo.new /opt/relevo.old
        mkdir -p /opt/relevo.new
        tar -xzf "$bundle" -C /opt/relevo.new --no-same-owner
        python3 -m compileall -q /opt/relevo.new/lib >/dev/null
        echo "$digest" >/opt/relevo.new/bundle.sha256
        if [ -d /opt/relevo ]; then
            mv /opt/relevo /opt/relevo.old
        fi
        mv /opt/relevo.new /opt/relevo
        rm -rf /opt/relevo.old
        vm_changed=1
    fi
fi
if [ ! -f /opt/relevo/bundle.sha256 ]; then
    echo "relevo: relevo's runtime was not uploaded (export without --no-runtime)" >&2
    exit 1
fi
if [ "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(cat /opt/relevo/python-version)" ]; then
    echo "relevo: warning: the runtime was packed for Python $(cat /opt/relevo/python-version)" >&2
fi
/usr/local/bin/relevo -f /var/lib/relevo-controller/relevo.yaml render systemd >/dev/null

begin "wait for the other VMs' provisioning (their LXD over HTTPS, with this VM's certificates)"
# The controller starts once every container is in place: one started too early would stop a standby
# whose provisioning had just started it. Each VM marks its container when it is done.
waited=0
while :; do
    pending=""
    # A remote that does not answer yet (its VM still booting) is pending, as one not yet marked.
    mark=$(LXD_CONF=/var/lib/relevo-controller/lxc timeout 20 lxc config get web1:pair-web1 user.relevo.provisioned </dev/null 2>/dev/null) || mark="not answering"
    case "$mark" in
    1) ;;
    failed*)
        echo "relevo: web1's provisioning $mark" >&2
        exit 1
        ;;
    *) pending="$pending web1" ;;
    esac
    # A remote that does not answer yet (its VM still booting) is pending, as one not yet marked.
    mark=$(LXD_CONF=/var/lib/relevo-controller/lxc timeout 20 lxc config get web2:pair-web2 user.relevo.provisioned </dev/null 2>/dev/null) || mark="not answering"
    case "$mark" in
    1) ;;
    failed*)
        echo "relevo: web2's provisioning $mark" >&2
        exit 1
        ;;
    *) pending="$pending web2" ;;
    esac
    # A remote that does not answer yet (its VM still booting) is pending, as one not yet marked.
    mark=$(LXD_CONF=/var/lib/relevo-controller/lxc timeout 20 lxc config get web1bck:pair-web1bck user.relevo.provisioned </dev/null 2>/dev/null) || mark="not answering"
    case "$mark" in
    1) ;;
    failed*)
        echo "relevo: web1bck's provisioning $mark" >&2
        exit 1
        ;;
    *) pending="$pending web1bck" ;;
    esac
    # A remote that does not answer yet (its VM still booting) is pending, as one not yet marked.
    mark=$(LXD_CONF=/var/lib/relevo-controller/lxc timeout 20 lxc config get web2bck:pair-web2bck user.relevo.provisioned </dev/null 2>/dev/null) || mark="not answering"
    case "$mark" in
    1) ;;
    failed*)
        echo "relevo: web2bck's provisioning $mark" >&2
        exit 1
        ;;
    *) pending="$pending web2bck" ;;
    esac
    if [ -z "$pending" ]; then
        break
    fi
    if [ "$waited" -ge 1800 ]; then
        echo "relevo: after ${waited} s, not provisioned yet:$pending" >&2
        exit 1
    fi
    sleep 5
    waited=$((waited + 5))
done

begin "the failover controller relevo-watch-pair.service"
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
install -d -m 0700 /var/lib/relevo-controller/.relevo
if [ "$vm_changed" = 1 ]; then
    systemctl daemon-reload
fi

begin "keepalived: the VIP 192.168.100.10 on eth1 (VRRP v3, unicast), its controller run only while MASTER"
# keepalived puts the VIP on the NIC named in its config: it must be the one carrying this VM's address.
if ! ip -o -4 addr show dev eth1 2>/dev/null | grep -q " 192.168.100.7/"; then
    echo "relevo: eth1 does not carry 192.168.100.7; keepalived would put the VIP elsewhere" >&2
    exit 1
fi
# Debian's keepalived comes with the box (`relevo box build`), or with LXD where a public box needed both.
if ! command -v keepalived >/dev/null; then
    echo "relevo: keepalived is not installed on ha2: the box lacks it (relevo's box built before" \
        "it carried keepalived?); \`relevo box build\` makes the current one" >&2
    exit 1
fi
keepalived -t -f /etc/keepalived/keepalived.conf
# keepalived's notify starts the controller on MASTER and stops it on BACKUP, FAULT or STOP. Enabled all
# the same: relevo on this VM (`relevo scenarios`) then stops and starts it through systemd, and one
# started at boot, before keepalived has said anything, stands by (it acts only while this VM's balancer
# is in charge: controller/charge.py).
if ! enabled relevo-watch-pair.service; then
    systemctl enable relevo-watch-pair.service
fi
for unit in relevo-haproxy-check.service keepalived.service; do
    if ! enabled "$unit"; then
        systemctl enable "$unit"
    fi
    if ! systemctl is-active --quiet "$unit"; then
        systemctl start "$unit"
    elif [ "$vm_changed" = 1 ]; then
        systemctl restart "$unit"
    fi
    if ! systemctl is-active --quiet "$unit"; then
        systemctl status --no-pager --lines=20 "$unit" >&2 || true
        echo "relevo: $unit is not active after its start" >&2
        exit 1
    fi
done
# keepalived tells its notify script of changes only: a VM already MASTER gets its controller here.
if [ "$(cat /run/relevo/vrrp-state 2>/dev/null)" = MASTER ]; then
    if ! systemctl is-active --quiet relevo-watch-pair.service; then
        systemctl start relevo-watch-pair.service
    elif [ "$vm_changed" = 1 ]; then
        systemctl restart relevo-watch-pair.service
    fi
fi


step="done"
echo "relevo: ha2: provisioned (balancer at 192.168.100.7:8080)"
