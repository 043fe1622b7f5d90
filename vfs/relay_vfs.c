/*
** relay_vfs.c: the relay VFS. Every sqlite3_vfs and sqlite3_io_methods call
** that SQLite makes is forwarded, argument for argument, to a host import
** (see wasqlite_abi.h). The host maps each file onto the actor's key-value
** store; nothing here touches storage, time or randomness by itself.
**
** This VFS is registered as the default in sqlite3_os_init(), which SQLite
** calls because the build sets SQLITE_OS_OTHER=1.
**
** What it deliberately leaves out:
**
**   1. Shared memory (xShm*). The io methods are version 1. Databases run in
**      locking_mode=EXCLUSIVE, where SQLite never asks for shared memory,
**      even in WAL mode.
**   2. Memory-mapped I/O (xFetch/xUnfetch). Pages come from the host.
**   3. Dynamic loading (xDlOpen and friends). Extensions are compiled out.
**   4. Temporary files. SQLITE_TEMP_STORE=3 keeps them in guest memory, so the
**      host only ever sees the main database and its journal.
**   5. Any state of its own beyond the host's file handle: sizes, locks and
**      buffering all live on the host, which owns the truth.
*/
#include "sqlite3.h"
#include "wasqlite_abi.h"

#include <string.h>

/*
** An open file. The host decides what the handle means.
*/
typedef struct RelayFile RelayFile;
struct RelayFile {
  sqlite3_file base;   /* Base class. Must be first. */
  int32_t hostId;      /* Handle returned by the host's xOpen. */
};

#define HOST_ID(pFile) (((RelayFile *)(pFile))->hostId)

static int nameLength(const char *zName){
  return zName ? (int)strlen(zName) : 0;
}

/*
** Close a file. The host flushes whatever it buffered for it.
*/
static int relayClose(sqlite3_file *pFile){
  return host_xClose(HOST_ID(pFile));
}

/*
** Read iAmt bytes at iOfst. A read past the end of the file returns
** SQLITE_IOERR_SHORT_READ with the missing tail zero-filled by the host.
*/
static int relayRead(sqlite3_file *pFile, void *zBuf, int iAmt, sqlite_int64 iOfst){
  return host_xRead(HOST_ID(pFile), zBuf, iAmt, iOfst);
}

/*
** Write iAmt bytes at iOfst. The host buffers them until a sync (or, past
** a few MiB, flushes them early); nothing is durable before xSync returns.
*/
static int relayWrite(
  sqlite3_file *pFile, const void *zBuf, int iAmt, sqlite_int64 iOfst
){
  return host_xWrite(HOST_ID(pFile), zBuf, iAmt, iOfst);
}

/*
** Set the file size. The host drops buffered chunks past the new end at
** once; the stored ones are deleted at the next sync.
*/
static int relayTruncate(sqlite3_file *pFile, sqlite_int64 size){
  return host_xTruncate(HOST_ID(pFile), size);
}

/*
** Make everything written so far durable in the key-value store.
*/
static int relaySync(sqlite3_file *pFile, int flags){
  return host_xSync(HOST_ID(pFile), flags);
}

/*
** Report the current file size in bytes.
*/
static int relayFileSize(sqlite3_file *pFile, sqlite_int64 *pSize){
  return host_xFileSize(HOST_ID(pFile), pSize);
}

/*
** Locking. One connection per actor means the host grants every lock; it
** records the level only to answer xCheckReservedLock.
*/
static int relayLock(sqlite3_file *pFile, int eLock){
  return host_xLock(HOST_ID(pFile), eLock);
}
static int relayUnlock(sqlite3_file *pFile, int eLock){
  return host_xUnlock(HOST_ID(pFile), eLock);
}
static int relayCheckReservedLock(sqlite3_file *pFile, int *pResOut){
  return host_xCheckReservedLock(HOST_ID(pFile), pResOut);
}

/*
** File controls. The host answers the batch-atomic-write trio
** (BEGIN/COMMIT/ROLLBACK_ATOMIC_WRITE) and SQLITE_NOTFOUND to the rest.
*/
static int relayFileControl(sqlite3_file *pFile, int op, void *pArg){
  return host_xFileControl(HOST_ID(pFile), op, pArg);
}

/*
** One KV chunk (4096 bytes), so that a journal header fills one value.
*/
static int relaySectorSize(sqlite3_file *pFile){
  return host_xSectorSize(HOST_ID(pFile));
}

/*
** SQLITE_IOCAP_BATCH_ATOMIC on the database file: a commit that fits one KV
** batch is one atomic write, with no journal.
*/
static int relayDeviceCharacteristics(sqlite3_file *pFile){
  return host_xDeviceCharacteristics(HOST_ID(pFile));
}

static const sqlite3_io_methods relayIoMethods = {
  1,                            /* iVersion */
  relayClose,                   /* xClose */
  relayRead,                    /* xRead */
  relayWrite,                   /* xWrite */
  relayTruncate,                /* xTruncate */
  relaySync,                    /* xSync */
  relayFileSize,                /* xFileSize */
  relayLock,                    /* xLock */
  relayUnlock,                  /* xUnlock */
  relayCheckReservedLock,       /* xCheckReservedLock */
  relayFileControl,             /* xFileControl */
  relaySectorSize,              /* xSectorSize */
  relayDeviceCharacteristics,   /* xDeviceCharacteristics */
  0,                            /* xShmMap */
  0,                            /* xShmLock */
  0,                            /* xShmBarrier */
  0,                            /* xShmUnmap */
  0,                            /* xFetch */
  0                             /* xUnfetch */
};

/*
** Open a file. The host picks the handle from the name alone (the
** SQLITE_OPEN_* type flags only say whether to create it), and refuses
** names it does not own (a second database through ATTACH, for instance)
** with SQLITE_CANTOPEN.
*/
static int relayOpen(
  sqlite3_vfs *pVfs, sqlite3_filename zName, sqlite3_file *pFile,
  int flags, int *pOutFlags
){
  RelayFile *p = (RelayFile *)pFile;
  int32_t outFlags = 0;
  int32_t hostId = -1;
  int rc;
  (void)pVfs;

  /* SQLite calls xClose only when pMethods is set, so leave it unset until
  ** the host has really opened the file. */
  p->base.pMethods = 0;
  rc = host_xOpen(zName, nameLength(zName), flags, &outFlags, &hostId);
  if( rc!=SQLITE_OK ) return rc;
  p->hostId = hostId;
  p->base.pMethods = &relayIoMethods;
  if( pOutFlags ) *pOutFlags = outFlags;
  return SQLITE_OK;
}

/*
** Delete a file: the host removes its chunks, then its size record, so a
** crash in between leaves a file of zeros, never stale pages.
*/
static int relayDelete(sqlite3_vfs *pVfs, const char *zName, int syncDir){
  (void)pVfs;
  return host_xDelete(zName, nameLength(zName), syncDir);
}

/*
** Whether a file exists (and, for SQLITE_ACCESS_EXISTS, is not empty).
*/
static int relayAccess(sqlite3_vfs *pVfs, const char *zName, int flags, int *pResOut){
  (void)pVfs;
  return host_xAccess(zName, nameLength(zName), flags, pResOut);
}

/*
** Names are already full: an actor's files live in its own namespace.
*/
static int relayFullPathname(
  sqlite3_vfs *pVfs, const char *zName, int nOut, char *zOut
){
  (void)pVfs;
  return host_xFullPathname(zName, nameLength(zName), zOut, nOut);
}

/*
** Randomness from the host's per-actor generator (seedable for tests).
*/
static int relayRandomness(sqlite3_vfs *pVfs, int nByte, char *zOut){
  (void)pVfs;
  return host_xRandomness(nByte, zOut);
}

/*
** Only a busy handler sleeps, which one exclusive connection never runs.
*/
static int relaySleep(sqlite3_vfs *pVfs, int microseconds){
  (void)pVfs;
  return host_xSleep(microseconds);
}

/*
** The host's wall clock, as a Julian day number in milliseconds.
*/
static int relayCurrentTimeInt64(sqlite3_vfs *pVfs, sqlite3_int64 *pTime){
  (void)pVfs;
  return host_xCurrentTimeInt64(pTime);
}

/*
** xCurrentTime is required by SQLite even though xCurrentTimeInt64 (version 2)
** is always preferred. It is derived here rather than given an import.
*/
static int relayCurrentTime(sqlite3_vfs *pVfs, double *pTime){
  sqlite3_int64 t = 0;
  int rc = relayCurrentTimeInt64(pVfs, &t);
  *pTime = t / 86400000.0;
  return rc;
}

/*
** The host's description of the last failure (a KV error, a refused name),
** which SQLite puts in its error message.
*/
static int relayGetLastError(sqlite3_vfs *pVfs, int nBuf, char *zBuf){
  (void)pVfs;
  return host_xGetLastError(nBuf, zBuf);
}

static sqlite3_vfs relayVfs = {
  2,                            /* iVersion */
  sizeof(RelayFile),            /* szOsFile */
  512,                          /* mxPathname */
  0,                            /* pNext */
  "wasqlite-relay",             /* zName */
  0,                            /* pAppData */
  relayOpen,                    /* xOpen */
  relayDelete,                  /* xDelete */
  relayAccess,                  /* xAccess */
  relayFullPathname,            /* xFullPathname */
  0,                            /* xDlOpen */
  0,                            /* xDlError */
  0,                            /* xDlSym */
  0,                            /* xDlClose */
  relayRandomness,              /* xRandomness */
  relaySleep,                   /* xSleep */
  relayCurrentTime,             /* xCurrentTime */
  relayGetLastError,            /* xGetLastError */
  relayCurrentTimeInt64,        /* xCurrentTimeInt64 */
  0,                            /* xSetSystemCall */
  0,                            /* xGetSystemCall */
  0                             /* xNextSystemCall */
};

/*
** SQLITE_OS_OTHER=1 leaves these two to the application.
*/
int sqlite3_os_init(void){
  return sqlite3_vfs_register(&relayVfs, 1);
}

int sqlite3_os_end(void){
  return SQLITE_OK;
}
