"""The JavaScript that the slide and HTML copies load, kept on disk so they work without a network.

nbconvert's templates load reveal.js, require.js, jQuery and MathJax from public CDNs. For a workshop
room with bad Wi-Fi (or none) the kit fetches pinned versions once from the npm registry with `npm pack`,
checks each tarball against the sha512 pinned below, and copies the files the pages need into
`<output>/_assets/`. The tarballs are cached in build/vendor/, so later builds work offline.

No npm on the machine? `--cdn` builds pages that load the same libraries from the CDNs instead.
"""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "build" / "vendor"
ASSETS = "_assets"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str                 # npm's sha512, as `npm view <name>@<version> dist.integrity` prints it
    files: tuple[str, ...]         # paths inside the package to copy (folders copied whole)

    @property
    def tarball(self) -> str:
        return f"{self.name}-{self.version}.tgz"


# reveal.js 4: the major nbconvert's reveal template is written for (it defaults to 4.0.2).
PACKAGES = {
    "reveal.js": Package("reveal.js", "4.6.1",
                         "sha512-1CW0auaXNPmwmvQ7TwpszwVxMi2Xr5cTS3J3EBC/HHgbPF32Dn7aiu/LKWDOGjMbaDwKQiGmfqcoGQ74HUHCMw==",
                         ("dist/reveal.css", "dist/reveal.js", "dist/theme", "plugin/notes", "LICENSE")),
    "requirejs": Package("requirejs", "2.3.7",
                         "sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
                         ("require.js",)),
    "jquery": Package("jquery", "3.7.1",
                      "sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
                      ("dist/jquery.min.js", "LICENSE.txt")),
    # MathJax 2, as nbconvert's templates configure it; only the TeX -> CommonHTML path (6 of 63 MB).
    "mathjax": Package("mathjax", "2.7.9",
                       "sha512-NOGEDTIM9+MrsqnjPEjVGNx4q0GQxqm61yQwSK+/5S59i26wId5IC5gNu9/bu8+CCVl5p9G2IHcAl/wJa+5+BQ==",
                       ("MathJax.js", "config/TeX-AMS_CHTML-full.js", "config/Safe.js", "config/local", "extensions",
                        "jax/input/TeX", "jax/output/CommonHTML", "jax/element", "fonts/HTML-CSS/TeX/woff",
                        "localization/en", "LICENSE")),
}

# Public CDN URLs for --cdn (the same versions), used only when npm is not available.
CDN = "https://cdn.jsdelivr.net/npm"


class AssetError(RuntimeError):
    """The assets could not be fetched or verified (the message names the fix)."""


class FetchError(AssetError):
    """npm is missing or the registry could not be reached: --cdn is the way out."""


def sri(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(package: Package, vendor: Path = VENDOR) -> Path:
    """The verified tarball in vendor/, fetched with `npm pack` if it is not there yet."""
    vendor.mkdir(parents=True, exist_ok=True)
    tarball = vendor / package.tarball
    if not tarball.exists():
        if not shutil.which("npm"):
            raise FetchError(f"npm is needed once to fetch {package.name} {package.version} for offline slides."
                             "\n       Fix: install Node.js/npm (Debian/Ubuntu: sudo apt-get install npm), "
                             "or build pages that load it from a CDN: add --cdn.")
        result = subprocess.run(["npm", "pack", f"{package.name}@{package.version}", "--json",
                                 "--pack-destination", str(vendor)],
                                capture_output=True, text=True)
        if result.returncode != 0 or not tarball.exists():
            raise FetchError(f"npm pack {package.name}@{package.version} failed: {result.stderr.strip()[-400:]}"
                             "\n       Fix: check access to the npm registry (npm ping), or add --cdn.")
    if sri(tarball) != package.integrity:
        tarball.unlink()
        raise AssetError(f"{tarball.name} does not match the sha512 pinned in tools/web_assets.py; deleted it."
                         "\n       Fix: run the build again; if it fails again, the registry served other bytes.")
    return tarball


def install(out: Path, vendor: Path = VENDOR, names=tuple(PACKAGES)) -> Path:
    """Copy the needed files of each package into out/_assets/<name>/; returns out/_assets."""
    assets = out / ASSETS
    for name in names:
        package = PACKAGES[name]
        target = assets / name
        stamp = target / ".version"
        if stamp.exists() and stamp.read_text() == package.integrity:
            continue
        tarball = fetch(package, vendor)
        shutil.rmtree(target, ignore_errors=True)
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers()
                       if m.isfile() and any(m.name == f"package/{f}" or m.name.startswith(f"package/{f}/")
                                             for f in package.files)]
            for member in members:
                member.name = member.name[len("package/"):]
                try:
                    archive.extract(member, target, filter="data")   # no paths outside target
                except TypeError:                                     # Python without extraction filters
                    archive.extract(member, target)
        stamp.write_text(package.integrity)
    (assets / "README.txt").write_text(
        "Copied by tools/web_assets.py from these npm packages (their licences are inside):\n"
        + "".join(f"  {p.name} {p.version}\n" for p in PACKAGES.values()))
    (assets / "versions.json").write_text(json.dumps({p.name: p.version for p in PACKAGES.values()}, indent=1))
    return assets


def urls(prefix: str | None) -> dict[str, str]:
    """Exporter settings: local files under `prefix` (a relative URL such as '_assets'), or the CDN if None."""
    base = prefix if prefix is not None else CDN
    v = {name: p.version for name, p in PACKAGES.items()}

    def where(name: str) -> str:
        return f"{base}/{name}" if prefix is not None else f"{CDN}/{name}@{v[name]}"

    return {
        "reveal_url_prefix": where("reveal.js"),
        "require_js_url": f"{where('requirejs')}/require.js",
        "jquery_url": f"{where('jquery')}/dist/jquery.min.js",
        "mathjax_url": f"{where('mathjax')}/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    }
