#!/usr/bin/env bash
# Builds hull's demo image offline, from Debian's busybox-static: an OCI image archive
# (oci-archive, what `skopeo copy ... oci-archive:` writes) with busybox, its applets and a
# small web page in /www, tagged hull-demo:latest. `scripts/setup.sh` loads it into hull's
# store so that the README's first command needs no registry:
#
#   hull run --rm hull-demo echo hello from a VM
#   hull run -d -p 8080:80 hull-demo httpd -f -p 80 -h /www
#
#   guest/demo/build.sh OUT.tar
set -euo pipefail
out=${1:?usage: guest/demo/build.sh OUT.tar}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "error: $busybox missing: apt-get install busybox-static" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,root,www,run}
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
cat > "$root/www/index.html" <<'HTML'
<!doctype html>
<title>hull</title>
<h1>Hello from a hull VM</h1>
<p>This page is served by busybox httpd inside a container that runs in its own virtual machine.</p>
HTML

layout=$work/layout
mkdir -p "$layout/blobs/sha256"
blob() { # stores stdin as a blob, prints "digest size"
  local tmp=$work/blob.tmp d s
  cat > "$tmp"
  d=$(sha256sum "$tmp" | cut -d' ' -f1); s=$(stat -c %s "$tmp")
  mv "$tmp" "$layout/blobs/sha256/$d"
  echo "$d $s"
}
# Reproducible layer: sorted names, fixed owner and time.
tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
read -r layer_digest layer_size < <(gzip -n -c "$work/layer.tar" | blob)
config=$(printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/","ExposedPorts":{"80/tcp":{}},"Labels":{"org.opencontainers.image.title":"hull-demo"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"guest/demo/build.sh: busybox-static and /www"}]}' "$diff_id")
read -r config_digest config_size < <(printf '%s' "$config" | blob)
manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size")
read -r manifest_digest manifest_size < <(printf '%s' "$manifest" | blob)
printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"hull-demo:latest","io.containerd.image.name":"docker.io/library/hull-demo:latest"},"platform":{"architecture":"amd64","os":"linux"}}]}' \
  "$manifest_digest" "$manifest_size" > "$layout/index.json"
tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
