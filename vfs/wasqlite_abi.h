/*
** wasqlite_abi.h: the one contract between the guest (the C files in vfs/, compiled to
** wasm/wasqlite.wasm) and the host (the Rust modules in src/guest/).
**
** The host checks WASQLITE_ABI_VERSION at instantiation, through the
** exported function wasqlite_abi_version(). Any change to an import or export
** signature, to the method list below, or to the row and parameter encodings
** bumps the version.
**
** IMPORTS (module "wasqlite"). Every sqlite3_vfs and sqlite3_io_methods
** method that the relay VFS implements is forwarded to one host import of the
** same name. WASQLITE_VFS_METHODS lists them with a stable index; the Rust
** side keeps the same table (src/guest/abi.rs) and a test compares the two.
** Pointers are guest addresses (i32). File offsets and sizes are i64, never
** lo/hi pairs. Every import returns an SQLite result code unless noted.
**
**   xOpen(zName, nName, flags, pOutFlags, pFileId)     name is not NUL-ended
**   xDelete(zName, nName, syncDir)
**   xAccess(zName, nName, flags, pResOut)
**   xFullPathname(zName, nName, zOut, nOut)
**   xRandomness(nByte, zOut)                           returns bytes written
**   xSleep(microseconds)                               returns microseconds slept
**   xCurrentTimeInt64(pTimeOut)                        Julian day * 86400000
**   xGetLastError(nBuf, zBuf)                          returns 0, fills zBuf
**   xClose(fileId)
**   xRead(fileId, pBuf, iAmt, iOfst)
**   xWrite(fileId, pBuf, iAmt, iOfst)
**   xTruncate(fileId, size)
**   xSync(fileId, flags)
**   xFileSize(fileId, pSizeOut)
**   xLock(fileId, level)
**   xUnlock(fileId, level)
**   xCheckReservedLock(fileId, pResOut)
**   xFileControl(fileId, op, pArg)
**   xSectorSize(fileId)                                returns the size
**   xDeviceCharacteristics(fileId)                     returns SQLITE_IOCAP_*
**
** No xShm* methods: the database runs in exclusive locking mode, so even WAL
** never needs shared memory.
**
** EXPORTS (the SQL surface, vfs/sql_api.c) are named wasqlite_*; see there.
** Those that hand back more than a code fill a struct the host passes in
** (PrepareResult, StepResult, Buffer), pointing into a guest buffer that
** stays valid until the next call; the host bounds-checks every pointer,
** length and count read from there before using it.
**
** STEP RESULT (guest -> host, filled by wasqlite_run, wasqlite_next and
** wasqlite_run_many; 40 bytes, 8-aligned):
**     @0  u32 pRows, @4 i32 nBytes: the rows, in the row encoding below
**     @8  i32 nRows: how many (wasqlite_run_many: sets that ran to the end)
**     @12 i32 nCol: sqlite3_column_count() after stepping, the values each
**         of these rows has
**     @16 i64 changes: on SQLITE_DONE, sqlite3_changes64(), or 0 for a
**         statement that sqlite3_stmt_readonly() calls read-only (SQLite's
**         count is then an earlier statement's)
**     @24 i64 lastRowid: on SQLITE_DONE, sqlite3_last_insert_rowid()
**     @32 i32 nReprepare: sqlite3_stmt_status(SQLITE_STMTSTATUS_REPREPARE)
**         after stepping
**     @36 i32 reserved, 0
** SQLite re-prepares a statement whose schema changed (ALTER TABLE, say)
** when it steps it, before the first row; the columns' count and names can
** change then. The host knows them as of one nReprepare value, and fetches
** them again (wasqlite_column_names) when a step reports another, after it
** has copied the rows out of the shared buffer that call reuses.
**
** ROW ENCODING (guest -> host, filled by wasqlite_run and wasqlite_next,
** several rows back to back): one record per column, in column order:
**     u8 type, then
**       WASQLITE_INTEGER: i64 little-endian
**       WASQLITE_REAL:    f64 little-endian (IEEE 754 bits)
**       WASQLITE_TEXT:    u32 little-endian byte length, UTF-8 bytes
**       WASQLITE_BLOB:    u32 little-endian byte length, bytes
**       WASQLITE_NULL:    nothing
**
** PARAMETER ENCODING (host -> guest, read by wasqlite_run and wasqlite_bind):
** one record per parameter:
**     u32 little-endian index (1-based), or 0 for "by name", followed then by
**       u32 name length (at most 255) and the name. A name that starts with
**       a prefix (":a", "@a", "$a", "?3") binds to exactly that parameter;
**       one without ("a") binds to ":a", "@a" or "$a", the first of those
**       the statement has.
**     u8 type and payload, encoded as in a row.
** wasqlite_run_many takes several parameter sets back to back, each a u32
** little-endian byte length followed by that many bytes of records.
**
** TEXT OR NULL (in the two encodings below): u32 little-endian byte length
** and the UTF-8 bytes, or the length WASQLITE_NO_TEXT alone for NULL.
**
** COLUMN ENCODING (guest -> host, filled by wasqlite_column_names): for each
** result column in order, its name (never NULL), then its declared type
** (sqlite3_column_decltype: NULL unless the column is a table column), each
** as a text-or-NULL.
**
** DESCRIPTION ENCODING (guest -> host, filled by wasqlite_describe):
**     u32 sqlite3_stmt_readonly(), u32 sqlite3_stmt_isexplain() (0, 1, or 2
**     for EXPLAIN QUERY PLAN), u32 sqlite3_bind_parameter_count(), then
**     each parameter's name from index 1 on, with its prefix, as a
**     text-or-NULL (NULL for a nameless "?").
*/
#ifndef WASQLITE_ABI_H
#define WASQLITE_ABI_H

#include <stdint.h>

#define WASQLITE_ABI_VERSION 7

/* Value type tags, shared by rows and parameters. */
#define WASQLITE_INTEGER 1
#define WASQLITE_REAL    2
#define WASQLITE_TEXT    3
#define WASQLITE_BLOB    4
#define WASQLITE_NULL    5

/* Extra result code: a parameter record that does not decode. */
#define WASQLITE_BAD_PARAMS 0x10000

/* The length that stands for NULL where text may be NULL. */
#define WASQLITE_NO_TEXT 0xFFFFFFFF

/* X(index, method): the methods forwarded to the host, in a stable order. */
#define WASQLITE_VFS_METHODS(X) \
  X(0,  xOpen)                  \
  X(1,  xDelete)                \
  X(2,  xAccess)                \
  X(3,  xFullPathname)          \
  X(4,  xRandomness)            \
  X(5,  xSleep)                 \
  X(6,  xCurrentTimeInt64)      \
  X(7,  xGetLastError)          \
  X(8,  xClose)                 \
  X(9,  xRead)                  \
  X(10, xWrite)                 \
  X(11, xTruncate)              \
  X(12, xSync)                  \
  X(13, xFileSize)              \
  X(14, xLock)                  \
  X(15, xUnlock)                \
  X(16, xCheckReservedLock)     \
  X(17, xFileControl)           \
  X(18, xSectorSize)            \
  X(19, xDeviceCharacteristics)

#define WASQLITE_IMPORT(name) \
  __attribute__((import_module("wasqlite"), import_name(#name)))

WASQLITE_IMPORT(xOpen) int32_t host_xOpen(const char *zName, int32_t nName,
    int32_t flags, int32_t *pOutFlags, int32_t *pFileId);
WASQLITE_IMPORT(xDelete) int32_t host_xDelete(const char *zName, int32_t nName,
    int32_t syncDir);
WASQLITE_IMPORT(xAccess) int32_t host_xAccess(const char *zName, int32_t nName,
    int32_t flags, int32_t *pResOut);
WASQLITE_IMPORT(xFullPathname) int32_t host_xFullPathname(const char *zName,
    int32_t nName, char *zOut, int32_t nOut);
WASQLITE_IMPORT(xRandomness) int32_t host_xRandomness(int32_t nByte, char *zOut);
WASQLITE_IMPORT(xSleep) int32_t host_xSleep(int32_t microseconds);
WASQLITE_IMPORT(xCurrentTimeInt64) int32_t host_xCurrentTimeInt64(int64_t *pOut);
WASQLITE_IMPORT(xGetLastError) int32_t host_xGetLastError(int32_t nBuf, char *zBuf);
WASQLITE_IMPORT(xClose) int32_t host_xClose(int32_t fileId);
WASQLITE_IMPORT(xRead) int32_t host_xRead(int32_t fileId, void *pBuf,
    int32_t iAmt, int64_t iOfst);
WASQLITE_IMPORT(xWrite) int32_t host_xWrite(int32_t fileId, const void *pBuf,
    int32_t iAmt, int64_t iOfst);
WASQLITE_IMPORT(xTruncate) int32_t host_xTruncate(int32_t fileId, int64_t size);
WASQLITE_IMPORT(xSync) int32_t host_xSync(int32_t fileId, int32_t flags);
WASQLITE_IMPORT(xFileSize) int32_t host_xFileSize(int32_t fileId, int64_t *pSize);
WASQLITE_IMPORT(xLock) int32_t host_xLock(int32_t fileId, int32_t level);
WASQLITE_IMPORT(xUnlock) int32_t host_xUnlock(int32_t fileId, int32_t level);
WASQLITE_IMPORT(xCheckReservedLock) int32_t host_xCheckReservedLock(
    int32_t fileId, int32_t *pResOut);
WASQLITE_IMPORT(xFileControl) int32_t host_xFileControl(int32_t fileId,
    int32_t op, void *pArg);
WASQLITE_IMPORT(xSectorSize) int32_t host_xSectorSize(int32_t fileId);
WASQLITE_IMPORT(xDeviceCharacteristics) int32_t host_xDeviceCharacteristics(
    int32_t fileId);

#endif /* WASQLITE_ABI_H */
