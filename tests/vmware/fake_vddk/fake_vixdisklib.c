/* A test double of VMware's proprietary VDDK library (libvixDiskLib.so).
 *
 * It serves one local raw file as the disk of one VM snapshot, and only to a
 * caller that presents the expected server, thumbprint, user and password.
 * What it expects comes from the environment the test gives nbdkit:
 *   FAKE_VDDK_DISK        the raw file served
 *   FAKE_VDDK_SERVER, FAKE_VDDK_THUMBPRINT, FAKE_VDDK_USER, FAKE_VDDK_PASSWORD
 *   FAKE_VDDK_VM          the VM's moref (vmxSpec must be "moref=<it>")
 *   FAKE_VDDK_SNAPSHOT    the snapshot's moref ("*": any, but one must be given, for a
 *                         backup test that cannot know the moref beforehand)
 *   FAKE_VDDK_FILE        the disk's file name ("[ds] vm/disk.vmdk")
 * Allocation (QueryAllocatedBlocks) follows the raw file's holes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vixDiskLib.h"

struct VixDiskLibConnectParam {
  int read_only;
};

struct VixDiskLibHandleStruct {
  int fd;
  uint64_t size;
};

static int initialized;

static const char *
expected (const char *name)
{
  const char *value = getenv (name);
  return value ? value : "";
}

static int
same (const char *given, const char *name)
{
  if (given != NULL && given[0] != '\0' && strcmp (expected (name), "*") == 0)
    return 1;
  return given != NULL && strcmp (given, expected (name)) == 0;
}

VixError
VixDiskLib_InitEx (uint32_t major, uint32_t minor, VixDiskLibGenericLogFunc *log,
                   VixDiskLibGenericLogFunc *warn, VixDiskLibGenericLogFunc *panic,
                   const char *libDir, const char *configFile)
{
  (void) minor; (void) log; (void) warn; (void) panic; (void) libDir; (void) configFile;
  if (major < 6)
    return VIX_E_NOT_SUPPORTED;
  initialized = 1;
  return VIX_OK;
}

void
VixDiskLib_Exit (void)
{
  initialized = 0;
}

VixError
VixDiskLib_ConnectEx (const VixDiskLibConnectParams *params, char readOnly,
                      const char *snapshotRef, const char *transportModes,
                      VixDiskLibConnection *connection)
{
  (void) transportModes;
  if (!initialized || params == NULL || connection == NULL)
    return VIX_E_INVALID_ARG;
  if (!same (params->serverName, "FAKE_VDDK_SERVER"))
    return VIX_E_FAIL;
  /* VDDK checks the certificate before it sends any credential. */
  if (!same (params->thumbPrint, "FAKE_VDDK_THUMBPRINT"))
    return VIX_E_NET_HTTP_SSL_SECURITY;
  if (params->credType != VIXDISKLIB_CRED_UID
      || !same (params->creds.uid.userName, "FAKE_VDDK_USER")
      || !same (params->creds.uid.password, "FAKE_VDDK_PASSWORD"))
    return VIX_E_HOST_USER_PERMISSIONS;
  if (params->vmxSpec == NULL || strncmp (params->vmxSpec, "moref=", 6) != 0
      || strcmp (params->vmxSpec + 6, expected ("FAKE_VDDK_VM")) != 0
      || !same (snapshotRef, "FAKE_VDDK_SNAPSHOT"))
    return VIX_E_FILE_NOT_FOUND;
  *connection = calloc (1, sizeof **connection);
  if (*connection == NULL)
    return VIX_E_FAIL;
  (*connection)->read_only = readOnly;
  return VIX_OK;
}

VixError
VixDiskLib_Disconnect (VixDiskLibConnection connection)
{
  free (connection);
  return VIX_OK;
}

VixError
VixDiskLib_Open (const VixDiskLibConnection connection, const char *path, uint32_t flags,
                 VixDiskLibHandle *handle)
{
  struct stat st;
  int fd;

  (void) flags;
  if (connection == NULL || !same (path, "FAKE_VDDK_FILE"))
    return VIX_E_FILE_NOT_FOUND;
  fd = open (expected ("FAKE_VDDK_DISK"), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat (fd, &st) != 0) {
    if (fd >= 0)
      close (fd);
    return VIX_E_FILE_ACCESS_ERROR;
  }
  *handle = calloc (1, sizeof **handle);
  if (*handle == NULL) {
    close (fd);
    return VIX_E_FAIL;
  }
  (*handle)->fd = fd;
  (*handle)->size = (uint64_t) st.st_size;
  return VIX_OK;
}

VixError
VixDiskLib_Close (VixDiskLibHandle handle)
{
  if (handle != NULL) {
    close (handle->fd);
    free (handle);
  }
  return VIX_OK;
}

VixError
VixDiskLib_GetInfo (VixDiskLibHandle handle, VixDiskLibInfo **info)
{
  *info = calloc (1, sizeof **info);
  if (*info == NULL)
    return VIX_E_FAIL;
  (*info)->capacity = handle->size / VIXDISKLIB_SECTOR_SIZE;
  (*info)->numLinks = 1;
  return VIX_OK;
}

void
VixDiskLib_FreeInfo (VixDiskLibInfo *info)
{
  free (info);
}

VixError
VixDiskLib_Read (VixDiskLibHandle handle, uint64_t startSector, uint64_t numSectors,
                 uint8_t *buf)
{
  uint64_t offset = startSector * VIXDISKLIB_SECTOR_SIZE;
  uint64_t count = numSectors * VIXDISKLIB_SECTOR_SIZE;

  if (offset + count > handle->size)
    return VIX_E_INVALID_ARG;
  while (count > 0) {
    ssize_t got = pread (handle->fd, buf, count, (off_t) offset);
    if (got <= 0)
      return VIX_E_FILE_ACCESS_ERROR;
    buf += got;
    offset += (uint64_t) got;
    count -= (uint64_t) got;
  }
  return VIX_OK;
}

VixError
VixDiskLib_QueryAllocatedBlocks (VixDiskLibHandle handle, uint64_t startSector,
                                 uint64_t numSectors, uint64_t chunkSize,
                                 VixDiskLibBlockList **blockList)
{
  uint64_t chunk = chunkSize * VIXDISKLIB_SECTOR_SIZE;
  uint64_t pos = startSector * VIXDISKLIB_SECTOR_SIZE;
  uint64_t end = (startSector + numSectors) * VIXDISKLIB_SECTOR_SIZE;
  VixDiskLibBlockList *list;
  uint32_t capacity = 16;

  if (chunkSize < VIXDISKLIB_MIN_CHUNK_SIZE || pos % chunk || end % chunk)
    return VIX_E_INVALID_ARG;
  if (end > handle->size)
    end = handle->size;
  list = calloc (1, sizeof *list + capacity * sizeof (VixDiskLibBlock));
  if (list == NULL)
    return VIX_E_FAIL;
  while (pos < end) {
    off_t data = lseek (handle->fd, (off_t) pos, SEEK_DATA);
    off_t hole;
    uint64_t first, last;

    if (data < 0 || (uint64_t) data >= end)
      break;
    hole = lseek (handle->fd, data, SEEK_HOLE);
    if (hole < 0 || (uint64_t) hole > end)
      hole = (off_t) end;
    /* Like VDDK, answer whole chunks: round the data run outwards. */
    first = (uint64_t) data / chunk * chunk;
    last = ((uint64_t) hole + chunk - 1) / chunk * chunk;
    if (list->numBlocks > 0) {
      VixDiskLibBlock *prev = &list->blocks[list->numBlocks - 1];
      if ((prev->offset + prev->length) * VIXDISKLIB_SECTOR_SIZE >= first) {
        prev->length = last / VIXDISKLIB_SECTOR_SIZE - prev->offset;
        pos = last;
        continue;
      }
    }
    if (list->numBlocks == capacity) {
      VixDiskLibBlockList *bigger;
      capacity *= 2;
      bigger = realloc (list, sizeof *list + capacity * sizeof (VixDiskLibBlock));
      if (bigger == NULL) {
        free (list);
        return VIX_E_FAIL;
      }
      list = bigger;
    }
    list->blocks[list->numBlocks].offset = first / VIXDISKLIB_SECTOR_SIZE;
    list->blocks[list->numBlocks].length = (last - first) / VIXDISKLIB_SECTOR_SIZE;
    list->numBlocks++;
    pos = last;
  }
  *blockList = list;
  return VIX_OK;
}

VixError
VixDiskLib_FreeBlockList (VixDiskLibBlockList *blockList)
{
  free (blockList);
  return VIX_OK;
}

char *
VixDiskLib_GetErrorText (VixError err, const char *locale)
{
  (void) locale;
  switch (err) {
  case VIX_E_INVALID_ARG: return strdup ("One of the parameters was invalid");
  case VIX_E_FILE_NOT_FOUND: return strdup ("The file was not found");
  case VIX_E_NOT_SUPPORTED: return strdup ("The operation is not supported");
  case VIX_E_FILE_ACCESS_ERROR: return strdup ("Cannot access file");
  case VIX_E_HOST_USER_PERMISSIONS:
    return strdup ("Cannot connect to host: incorrect user name or password");
  case VIX_E_NET_HTTP_SSL_SECURITY:
    return strdup ("SSL error: the host's certificate thumbprint does not match");
  default: return strdup ("Unknown error");
  }
}

void
VixDiskLib_FreeErrorText (char *text)
{
  free (text);
}
