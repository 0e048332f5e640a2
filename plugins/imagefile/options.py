"""The options of an imagefile job (or endpoint), checked once, with clear errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tapir.appliance.plugin_api import AssetInfo, OptionSpec, PluginError

ASSET_KIND = "vm"

_IMAGES_HELP = (
    "Absolute paths of the raw or qcow2 image files; they are the machine's disks, in order."
)

#: Options of an endpoint: a machine's image set, so that discovery can see it.
ENDPOINT_OPTIONS = [
    OptionSpec("images", "list[str]", _IMAGES_HELP, required=True),
    OptionSpec("name", "str", "Machine name (default: the first image's name without suffix)."),
]

#: Job options; ``images`` and ``name`` may come from the job's endpoint instead.
JOB_OPTIONS = [
    OptionSpec("images", "list[str]", _IMAGES_HELP + " Not needed when the endpoint has them."),
    ENDPOINT_OPTIONS[1],
    OptionSpec(
        "changed_extents",
        "path",
        'JSON file {"<image path>": [[offset, length], ...]} of the areas changed since the '
        "previous backup (stands in for changed block tracking); without it an incremental "
        "reads every allocated area.",
    ),
    OptionSpec(
        "image_format",
        "choice",
        "How to read the images: auto recognises qcow2 by its header, raw or qcow2 force it.",
        default="auto",
        choices=("auto", "raw", "qcow2"),
    ),
    OptionSpec(
        "format",
        "choice",
        "Format of restored disk files: raw (sparse) or qcow2. Unset: raw into a target "
        "folder, the original format at the original place.",
        choices=("raw", "qcow2"),
    ),
]


@dataclass(frozen=True)
class ImageSet:
    """The images of one job, as the plugin uses them."""

    images: tuple[Path, ...]
    name: str
    changed_extents: Path | None = None
    image_format: str = "auto"

    def asset(self) -> AssetInfo:
        """The asset these images form: a "vm" named after the job or its first image."""
        digest = hashlib.sha256("\0".join(map(str, self.images)).encode()).hexdigest()[:16]
        return AssetInfo(
            kind=ASSET_KIND,
            name=self.name,
            external_id=f"imagefile:{digest}",
            metadata={"images": [str(p) for p in self.images]},
        )


def _path(value: object, what: str) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise PluginError(f"{what} must be a path, not {value!r}")
    path = Path(value)
    if not path.is_absolute():
        raise PluginError(f"{what} must be an absolute path, not {str(path)!r}")
    return path


def parse_options(*layers: Mapping[str, object] | None) -> ImageSet:
    """Build the image set from option mappings; later layers override earlier ones.

    The engine passes the endpoint's options (if any) and then the job's.
    """
    opts: dict[str, object] = {}
    for layer in layers:
        opts.update(layer or {})
    images = opts.get("images")
    if isinstance(images, str | os.PathLike) or not isinstance(images, list | tuple):
        raise PluginError(f"option images must be a list of image paths, not {images!r}")
    if not images:
        raise PluginError("option images is empty: name at least one image file")
    paths = tuple(_path(p, "each entry of images") for p in images)
    real = [os.path.realpath(p) for p in paths]
    duplicates = sorted({str(p) for p, r in zip(paths, real, strict=True) if real.count(r) > 1})
    if duplicates:
        raise PluginError(f"option images names the same file more than once: {duplicates}")
    name = opts.get("name") or paths[0].stem
    if not isinstance(name, str):
        raise PluginError(f"option name must be text, not {name!r}")
    changed = opts.get("changed_extents")
    image_format = opts.get("image_format") or "auto"
    if image_format not in ("auto", "raw", "qcow2"):
        raise PluginError(f"option image_format must be auto, raw or qcow2, not {image_format!r}")
    return ImageSet(
        images=paths,
        name=name,
        changed_extents=_path(changed, "option changed_extents") if changed else None,
        image_format=str(image_format),
    )
