"""Make an ``asv publish`` site work without internet access.

asv's pages load jQuery, flot, bootstrap and three small plug-ins from public
CDNs; on a machine without internet (a GPU node, this project's CI) the site
shows only "One or more external (JavaScript) dependencies ... failed to
load". This fetches the same libraries from the npm registry once (cached),
copies them next to the pages, and points the pages at the local copies.

    feedbench offline-html .asv/html
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from feedbench.core.data import cache_dir

# CDN path fragment -> (npm package, file inside the package)
VENDORED = {
    "jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    "flot/0.8.3/jquery.flot.min.js": ("flot@0.8.3", "jquery.flot.js"),
    "flot/0.8.3/jquery.flot.time.min.js": ("flot@0.8.3", "jquery.flot.time.js"),
    "flot/0.8.3/jquery.flot.selection.min.js": ("flot@0.8.3", "jquery.flot.selection.js"),
    "flot/0.8.3/jquery.flot.categories.min.js": ("flot@0.8.3", "jquery.flot.categories.js"),
    "flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"),
    "stupidtable/1.0.1/stupidtable.min.js": ("stupid-table-plugin@1.1.3", "stupidtable.min.js"),
    "blueimp-md5/2.19.0/js/md5.min.js": ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "bootstrap@3.1.1/dist/js/bootstrap.min.js": ("bootstrap@3.1.1", "dist/js/bootstrap.min.js"),
    "bootstrap@3.1.1/dist/css/bootstrap.min.css": ("bootstrap@3.1.1", "dist/css/bootstrap.min.css"),
}
_EXTERNAL = re.compile(r'(<(?:script|link)\b[^>]*?(?:src|href)=")(https://[^"]+)("[^>]*>)')


def _package_dir(package: str) -> Path:
    """The unpacked npm package, fetched once into the feedbench cache."""
    target = cache_dir() / "js" / package.replace("@", "-")
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["npm", "pack", "--silent", package], cwd=tmp, check=True, capture_output=True, timeout=300)
        except FileNotFoundError as exc:
            raise RuntimeError("npm not found; install Node.js's npm to make the asv site work offline") from exc
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"npm pack {package} failed: {exc.stderr.decode().strip()[-300:]}") from exc
        archive = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(tmp) / "package", target)
    return target


def _vendored(url: str) -> tuple[str, str] | None:
    """(npm package, file in it) for a CDN URL asv's pages load, or None."""
    for fragment, found in VENDORED.items():
        if url.endswith(fragment):
            return found
    return None


def make_offline(html_dir: str | Path) -> list[str]:
    """Vendor the CDN libraries into ``html_dir``; returns the URLs replaced."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").exists():
        raise FileNotFoundError(f"{html_dir} has no index.html; expected the output of `asv publish`")
    replaced = []

    def local(match: re.Match) -> str:
        found = _vendored(match.group(2))
        if found is None:
            return match.group(0)
        package, inner = found
        name = f"vendor/{package.replace('@', '-')}/{inner}"
        (html_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_package_dir(package) / inner, html_dir / name)
        replaced.append(match.group(2))
        # Integrity hashes name the CDN's minified bytes; the local copy is the same library.
        rest = re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", match.group(3))
        return f"{match.group(1)}{name}{rest}"

    for page in html_dir.glob("*.html"):
        text = page.read_text()
        page.write_text(_EXTERNAL.sub(local, text))
    return replaced
