"""The one image hosts run: Debian's static busybox, imported locally (no registry is reachable)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from localcloud.hosts import Host

IMAGE = "swarmwarden/busybox:local"
BUSYBOX = Path("/bin/busybox")


def build_rootfs(dest: Path, busybox: Path = BUSYBOX) -> Path:
    """Write a rootfs tarball: the busybox binary, a symlink per applet, and the usual empty dirs."""
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(dest, "w") as tar:
        for directory in ("bin", "etc", "tmp", "proc", "sys", "dev", "var", "var/www"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in sorted(set(applets) - {"busybox"}):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return dest


def load_image(host: Host, rootfs: Path, tag: str = IMAGE) -> None:
    """Import the rootfs on `host` as `tag`, unless it is there already."""
    if host.docker("image", "inspect", tag, check=False).returncode == 0:
        return
    host.docker("import", "--change", 'CMD ["sh"]', str(rootfs), tag, timeout=120)
