/* The subset of VMware's VixDiskLib C API that the test stand-ins use.
 *
 * Written for Tapir's tests from VixDiskLib's public documentation: both the
 * fake library (fake_vixdisklib.c) and the stand-in nbdkit plugin
 * (fake_nbdkit_vddk.c) include it, so their shared structures always agree.
 */
#ifndef TAPIR_FAKE_VIXDISKLIB_H
#define TAPIR_FAKE_VIXDISKLIB_H

#include <stdarg.h>
#include <stdint.h>

typedef uint64_t VixError;
#define VIX_OK 0
#define VIX_E_FAIL 1
#define VIX_E_INVALID_ARG 3
#define VIX_E_FILE_NOT_FOUND 4
#define VIX_E_NOT_SUPPORTED 6
#define VIX_E_FILE_ACCESS_ERROR 13
#define VIX_E_HOST_USER_PERMISSIONS 3015
#define VIX_E_NET_HTTP_SSL_SECURITY 30009

#define VIXDISKLIB_SECTOR_SIZE 512
#define VIXDISKLIB_FLAG_OPEN_READ_ONLY 4
#define VIXDISKLIB_MIN_CHUNK_SIZE 128

typedef void VixDiskLibGenericLogFunc(const char *fmt, va_list args);

typedef enum {
  VIXDISKLIB_CRED_UID = 1,
  VIXDISKLIB_CRED_SESSIONID = 2,
} VixDiskLibCredType;

typedef struct {
  char *vmxSpec;            /* "moref=vm-42" */
  char *serverName;
  char *thumbPrint;         /* SHA-1 of the server's certificate, colon hex */
  long reserved1;
  VixDiskLibCredType credType;
  union {
    struct {
      char *userName;
      char *password;
    } uid;
    struct {
      char *cookie;
    } sessionId;
  } creds;
  uint32_t port;
  uint32_t nfcHostPort;
} VixDiskLibConnectParams;

typedef struct {
  uint64_t capacity;        /* in sectors */
  uint32_t numLinks;
} VixDiskLibInfo;

typedef struct {
  uint64_t offset;          /* in sectors */
  uint64_t length;
} VixDiskLibBlock;

typedef struct {
  uint32_t numBlocks;
  VixDiskLibBlock blocks[];
} VixDiskLibBlockList;

typedef struct VixDiskLibConnectParam *VixDiskLibConnection;
typedef struct VixDiskLibHandleStruct *VixDiskLibHandle;

#endif
