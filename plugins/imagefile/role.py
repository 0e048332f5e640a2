"""The ``imagefile`` hypervisor role: local image files as the disks of one machine."""

from __future__ import annotations

from collections.abc import Mapping

from tapir.appliance.plugin_api import (
    AssetInfo,
    BackupRequest,
    BackupResult,
    BackupSink,
    ConnectionFailed,
    EndpointInfo,
    HypervisorPlugin,
    OptionSpec,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from .backup import backup_images
from .formats import probe_image
from .options import ENDPOINT_OPTIONS, JOB_OPTIONS, ImageSet, parse_options
from .restore import restore_disks


class ImageFilePlugin(HypervisorPlugin):
    """Backs up local raw and qcow2 image files as the disks of a machine.

    The image set comes from the job options (``images``, ``name``,
    ``changed_extents``, ``image_format``), layered over the endpoint's options
    when the job has an endpoint.
    """

    name = "imagefile"
    title = "Local disk image files (raw, qcow2)"

    def job_options(self) -> list[OptionSpec]:
        """See :meth:`SourcePlugin.job_options`."""
        return list(JOB_OPTIONS)

    def endpoint_options(self) -> list[OptionSpec]:
        """An endpoint holds a machine's image set (``images``, ``name``)."""
        return list(ENDPOINT_OPTIONS)

    def capabilities(self) -> set[str]:
        """Incrementals from a changed-extents file; no file-level restore yet."""
        return {"incremental"}

    def image_set(
        self, endpoint: EndpointInfo | None, options: Mapping[str, object] | None
    ) -> ImageSet:
        """The checked image set of a job (its options over its endpoint's)."""
        return parse_options(endpoint.options if endpoint else None, options)

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        """The endpoint's image set as one "vm" asset; without an endpoint there is nothing
        to discover (a job names its images itself, see :meth:`job_assets`)."""
        if endpoint is None:
            return []
        return [self.image_set(endpoint, None).asset()]

    def job_assets(
        self, endpoint: EndpointInfo | None, options: dict[str, object], ctx: PluginContext
    ) -> list[AssetInfo]:
        """The job's image set (its options over its endpoint's) as one "vm" asset."""
        return [self.image_set(endpoint, options).asset()]

    def test_connection(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        """Check every image of the endpoint's set is a readable raw or qcow2 file."""
        try:
            images = self.image_set(endpoint, None)
        except PluginError as exc:
            raise ConnectionFailed(str(exc)) from None
        problems = []
        for path in images.images:
            try:
                info = probe_image(path, images.image_format)
            except PluginError as exc:
                problems.append(str(exc))
            else:
                ctx.logger.info("%s: %s, %d bytes", path, info.format, info.virtual_size)
        if problems:
            raise ConnectionFailed("; ".join(problems))

    def backup(self, request: BackupRequest, sink: BackupSink, ctx: PluginContext) -> BackupResult:
        """Store each image as ``disks/<n>-<basename>``; see docs/plugins/imagefile.md."""
        images = self.image_set(request.endpoint, request.options)
        expected = images.asset().external_id
        if request.asset.external_id not in ("", expected):
            raise PluginError(
                f"asset {request.asset.name!r} ({request.asset.external_id}) is not the image "
                f"set of these options ({expected}); rediscover the job's assets"
            )
        return backup_images(images, request, sink, ctx)

    def restore(
        self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """Write each disk as an image file; ``options["format"]``: raw (default) or qcow2."""
        return restore_disks(request, source, ctx)
