/* A stand-in for nbdkit's vddk plugin, which Debian's nbdkit does not ship.
 *
 * It takes the same parameters as nbdkit-vddk-plugin(1) (libdir, server, user,
 * password, thumbprint, vm, snapshot, file, transports, ...), loads
 * <libdir>/lib64/libvixDiskLib.so.{8,7,6} with dlopen as the real plugin does,
 * logs in per NBD connection with VixDiskLib_ConnectEx, and reports errors in
 * the real plugin's words. Reads go through VixDiskLib_Read, block status
 * through VixDiskLib_QueryAllocatedBlocks. Written for Tapir's tests from the
 * plugin's manual page; it shares no code with nbdkit's plugin.
 */
#define NBDKIT_API_VERSION 2
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-plugin.h>

#include "vixDiskLib.h"

#define CHUNK_SECTORS VIXDISKLIB_MIN_CHUNK_SIZE

static char *libdir, *server, *user, *password, *thumbprint, *vm, *snapshot, *file;
static char *transports, *config_file;
static int port;
static void *dl;

static VixError (*InitEx) (uint32_t, uint32_t, VixDiskLibGenericLogFunc *,
                           VixDiskLibGenericLogFunc *, VixDiskLibGenericLogFunc *,
                           const char *, const char *);
static void (*Exit) (void);
static VixError (*ConnectEx) (const VixDiskLibConnectParams *, char, const char *,
                              const char *, VixDiskLibConnection *);
static VixError (*Disconnect) (VixDiskLibConnection);
static VixError (*Open) (const VixDiskLibConnection, const char *, uint32_t,
                         VixDiskLibHandle *);
static VixError (*Close) (VixDiskLibHandle);
static VixError (*GetInfo) (VixDiskLibHandle, VixDiskLibInfo **);
static void (*FreeInfo) (VixDiskLibInfo *);
static VixError (*Read) (VixDiskLibHandle, uint64_t, uint64_t, uint8_t *);
static VixError (*QueryAllocatedBlocks) (VixDiskLibHandle, uint64_t, uint64_t, uint64_t,
                                         VixDiskLibBlockList **);
static VixError (*FreeBlockList) (VixDiskLibBlockList *);
static char *(*GetErrorText) (VixError, const char *);
static void (*FreeErrorText) (char *);

struct handle {
  VixDiskLibConnection connection;
  VixDiskLibHandle disk;
};

static void
vix_error (const char *fn, VixError err)
{
  char *text = GetErrorText (err, NULL);
  nbdkit_error ("%s: %s", fn, text ? text : "unknown error");
  FreeErrorText (text);
}

static void
vddk_unload (void)
{
  if (dl != NULL && Exit != NULL)
    Exit ();
  if (dl != NULL)
    dlclose (dl);
  free (libdir); free (server); free (user); free (password); free (thumbprint);
  free (vm); free (snapshot); free (file); free (transports); free (config_file);
}

static int
set (char **field, const char *value)
{
  free (*field);
  *field = strdup (value);
  return *field ? 0 : -1;
}

static int
vddk_config (const char *key, const char *value)
{
  if (strcmp (key, "libdir") == 0) return set (&libdir, value);
  if (strcmp (key, "server") == 0) return set (&server, value);
  if (strcmp (key, "user") == 0) return set (&user, value);
  if (strcmp (key, "thumbprint") == 0) return set (&thumbprint, value);
  if (strcmp (key, "vm") == 0) return set (&vm, value);
  if (strcmp (key, "snapshot") == 0) return set (&snapshot, value);
  if (strcmp (key, "file") == 0) return set (&file, value);
  if (strcmp (key, "transports") == 0) return set (&transports, value);
  if (strcmp (key, "config") == 0) return set (&config_file, value);
  if (strcmp (key, "port") == 0) return nbdkit_parse_int ("port", value, &port);
  if (strcmp (key, "password") == 0) {
    free (password);
    password = NULL;
    return nbdkit_read_password (value, &password);
  }
  nbdkit_error ("unknown parameter '%s'", key);
  return -1;
}

#define SYMBOL(var, name)                                                    \
  do {                                                                       \
    *(void **) &var = dlsym (dl, name);                                      \
    if (var == NULL) {                                                       \
      nbdkit_error ("required VDDK symbol \"%s\" is missing: %s", name,      \
                    dlerror ());                                             \
      return -1;                                                             \
    }                                                                        \
  } while (0)

static int
load_library (void)
{
  static const char *names[] = { "libvixDiskLib.so.8", "libvixDiskLib.so.7",
                                 "libvixDiskLib.so.6", NULL };
  char path[4096], first_error[4096] = "";
  size_t i;

  for (i = 0; names[i] != NULL; i++) {
    snprintf (path, sizeof path, "%s/lib64/%s", libdir ? libdir : ".", names[i]);
    dl = dlopen (path, RTLD_NOW);
    if (dl != NULL)
      break;
    if (i == 0)
      snprintf (first_error, sizeof first_error, "%s", dlerror ());
  }
  if (dl == NULL) {
    nbdkit_error ("%s\n\nIf '%s' is located on a non-standard path you may need to\n"
                  "set libdir=/path/to/vmware-vix-disklib-distrib.\n\n"
                  "See nbdkit-vddk-plugin(1) man page section \"LIBRARY LOCATION\" "
                  "for details.", first_error, names[0]);
    return -1;
  }
  SYMBOL (InitEx, "VixDiskLib_InitEx");
  SYMBOL (Exit, "VixDiskLib_Exit");
  SYMBOL (ConnectEx, "VixDiskLib_ConnectEx");
  SYMBOL (Disconnect, "VixDiskLib_Disconnect");
  SYMBOL (Open, "VixDiskLib_Open");
  SYMBOL (Close, "VixDiskLib_Close");
  SYMBOL (GetInfo, "VixDiskLib_GetInfo");
  SYMBOL (FreeInfo, "VixDiskLib_FreeInfo");
  SYMBOL (Read, "VixDiskLib_Read");
  SYMBOL (QueryAllocatedBlocks, "VixDiskLib_QueryAllocatedBlocks");
  SYMBOL (FreeBlockList, "VixDiskLib_FreeBlockList");
  SYMBOL (GetErrorText, "VixDiskLib_GetErrorText");
  SYMBOL (FreeErrorText, "VixDiskLib_FreeErrorText");
  return 0;
}

static int
vddk_config_complete (void)
{
  VixError err;

  if (file == NULL) {
    nbdkit_error ("you must supply the file=<FILENAME> parameter "
                  "after the plugin name on the command line");
    return -1;
  }
  if (server != NULL) {
    if (user == NULL || password == NULL || thumbprint == NULL || vm == NULL) {
      nbdkit_error ("when using server=, you must also supply user=, password=, "
                    "thumbprint= and vm= parameters");
      return -1;
    }
  }
  if (load_library () == -1)
    return -1;
  err = InitEx (6, 0, NULL, NULL, NULL, libdir, config_file);
  if (err != VIX_OK) {
    vix_error ("VixDiskLib_InitEx", err);
    return -1;
  }
  return 0;
}

static void *
vddk_open (int readonly)
{
  VixDiskLibConnectParams params = { 0 };
  struct handle *h = calloc (1, sizeof *h);
  VixError err;

  if (h == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  params.vmxSpec = vm;
  params.serverName = server;
  params.thumbPrint = thumbprint;
  params.credType = VIXDISKLIB_CRED_UID;
  params.creds.uid.userName = user;
  params.creds.uid.password = password;
  params.port = (uint32_t) port;
  err = ConnectEx (&params, (char) readonly, snapshot, transports, &h->connection);
  if (err != VIX_OK) {
    vix_error ("VixDiskLib_ConnectEx", err);
    free (h);
    return NULL;
  }
  err = Open (h->connection, file, readonly ? VIXDISKLIB_FLAG_OPEN_READ_ONLY : 0, &h->disk);
  if (err != VIX_OK) {
    vix_error ("VixDiskLib_Open", err);
    Disconnect (h->connection);
    free (h);
    return NULL;
  }
  nbdkit_debug ("transport mode: %s", transports ? transports : "default");
  return h;
}

static void
vddk_close (void *handle)
{
  struct handle *h = handle;
  Close (h->disk);
  Disconnect (h->connection);
  free (h);
}

static int64_t
vddk_get_size (void *handle)
{
  struct handle *h = handle;
  VixDiskLibInfo *info;
  VixError err = GetInfo (h->disk, &info);
  int64_t size;

  if (err != VIX_OK) {
    vix_error ("VixDiskLib_GetInfo", err);
    return -1;
  }
  size = (int64_t) info->capacity * VIXDISKLIB_SECTOR_SIZE;
  FreeInfo (info);
  return size;
}

static int
vddk_can_write (void *handle)
{
  (void) handle;
  return 0;
}

static int
vddk_can_extents (void *handle)
{
  (void) handle;
  return 1;
}

static int
vddk_pread (void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;
  VixError err;

  (void) flags;
  if (count % VIXDISKLIB_SECTOR_SIZE || offset % VIXDISKLIB_SECTOR_SIZE) {
    nbdkit_error ("%s is not aligned to sectors", "read");
    return -1;
  }
  err = Read (h->disk, offset / VIXDISKLIB_SECTOR_SIZE, count / VIXDISKLIB_SECTOR_SIZE, buf);
  if (err != VIX_OK) {
    vix_error ("VixDiskLib_Read", err);
    return -1;
  }
  return 0;
}

static int
vddk_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents)
{
  struct handle *h = handle;
  uint64_t chunk = CHUNK_SECTORS * VIXDISKLIB_SECTOR_SIZE;
  uint64_t start = offset / chunk * chunk;
  uint64_t end = (offset + count + chunk - 1) / chunk * chunk;
  int64_t size = vddk_get_size (handle);
  VixDiskLibBlockList *list;
  uint64_t pos = start;
  uint32_t i;
  VixError err;

  (void) flags;
  if (size < 0)
    return -1;
  if (end > (uint64_t) size)
    end = (uint64_t) size / chunk * chunk;
  if (end <= start)
    return nbdkit_add_extent (extents, offset, count, 0);
  err = QueryAllocatedBlocks (h->disk, start / VIXDISKLIB_SECTOR_SIZE,
                              (end - start) / VIXDISKLIB_SECTOR_SIZE, CHUNK_SECTORS, &list);
  if (err != VIX_OK) {
    vix_error ("VixDiskLib_QueryAllocatedBlocks", err);
    return -1;
  }
  for (i = 0; i < list->numBlocks; i++) {
    uint64_t b_off = list->blocks[i].offset * VIXDISKLIB_SECTOR_SIZE;
    uint64_t b_len = list->blocks[i].length * VIXDISKLIB_SECTOR_SIZE;
    if (b_off > pos
        && nbdkit_add_extent (extents, pos, b_off - pos,
                              NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) == -1)
      goto fail;
    if (nbdkit_add_extent (extents, b_off, b_len, 0) == -1)
      goto fail;
    pos = b_off + b_len;
  }
  if (pos < end
      && nbdkit_add_extent (extents, pos, end - pos,
                            NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) == -1)
    goto fail;
  /* A tail shorter than one chunk cannot be queried: call it data. */
  if (end < (uint64_t) size && nbdkit_add_extent (extents, end, size - end, 0) == -1)
    goto fail;
  FreeBlockList (list);
  return 0;
fail:
  FreeBlockList (list);
  return -1;
}

#define THREAD_MODEL NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS

static struct nbdkit_plugin plugin = {
  .name = "vddk",
  .longname = "Tapir's test stand-in for the VDDK plugin",
  .version = "0.1",
  .unload = vddk_unload,
  .config = vddk_config,
  .config_complete = vddk_config_complete,
  .magic_config_key = "file",
  .open = vddk_open,
  .close = vddk_close,
  .get_size = vddk_get_size,
  .can_write = vddk_can_write,
  .can_extents = vddk_can_extents,
  .pread = vddk_pread,
  .extents = vddk_extents,
};

NBDKIT_REGISTER_PLUGIN (plugin)
