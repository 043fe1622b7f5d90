/*
** sql_api.c: the SQL surface the host calls. Thin wrappers over the sqlite3_*
** API, shaped so that one host call does one useful thing: wasqlite_run binds
** every parameter from one buffer and steps, wasqlite_next steps on, and
** each hands back a batch of whole rows in one buffer (encodings in
** wasqlite_abi.h).
** Each crossing between host and guest costs far more than a C call, so the
** surface is built to keep them few: an INSERT is one call.
**
** Everything exported is named wasqlite_*. Guest memory for arguments comes
** from wasqlite_malloc and goes back through wasqlite_free.
**
** The guest runs one connection at a time (one actor per instance, and
** SQLITE_THREADSAFE=0), so the row buffer below is shared by all statements:
** the host reads a row before it steps again.
*/
#include "sqlite3.h"
#include "wasqlite_abi.h"

#include <stdlib.h>
#include <string.h>

#define WASQLITE_EXPORT(name) __attribute__((export_name(#name)))

/* The one database file an instance opens. The host maps it, and the
** "-journal" and "-wal" names derived from it, onto the actor's keys. */
#define DB_NAME "actor.db"

/* What wasqlite_prepare reports about a new statement. */
typedef struct PrepareResult PrepareResult;
struct PrepareResult {
  sqlite3_stmt *pStmt;   /* NULL when the text held only spaces or comments */
  int32_t tailOffset;    /* Bytes of zSql consumed */
  int32_t columnCount;   /* sqlite3_column_count() */
  int32_t paramCount;    /* sqlite3_bind_parameter_count() */
};

/* Where wasqlite_column_names and wasqlite_describe leave their output. */
typedef struct Buffer Buffer;
struct Buffer {
  uint8_t *p;            /* Start; owned by this file, valid until next use */
  int32_t n;             /* Bytes used */
};

static uint8_t *outBuf = 0;   /* Reused for rows, columns and descriptions */
static int32_t outCap = 0;    /* Bytes allocated at outBuf */
static int32_t outLen = 0;    /* Bytes written at outBuf */

/* Make room for n more bytes in the output buffer. */
static int outReserve(int64_t n){
  int64_t need = (int64_t)outLen + n;
  if( need<=outCap ) return SQLITE_OK;
  if( need>0x7fffffff ) return SQLITE_TOOBIG;
  int64_t cap = outCap ? outCap : 256;
  while( cap<need ) cap *= 2;
  if( cap>0x7fffffff ) cap = 0x7fffffff;
  uint8_t *p = sqlite3_realloc64(outBuf, (sqlite3_uint64)cap);
  if( p==0 ) return SQLITE_NOMEM;
  outBuf = p;
  outCap = (int32_t)cap;
  return SQLITE_OK;
}

/* wasm32 is little-endian, so native stores give the documented encoding. */
static void outPut(const void *p, int32_t n){
  if( n>0 ) memcpy(outBuf + outLen, p, (size_t)n);
  outLen += n;
}

WASQLITE_EXPORT(wasqlite_abi_version)
int32_t wasqlite_abi_version(void){
  return WASQLITE_ABI_VERSION;
}

/* Heap reserved at build time: the first SELECT on a 10-table database
** allocates about 100 KiB, a busy actor's page cache a few MiB. */
#define HEAP_HEADROOM (1024*1024)

/*
** Run once at build time by wasm/build.sh (through wizer), never by the
** host: everything SQLite sets up before the first connection, done ahead so
** that the committed module's data segment already holds it and every wake
** skips it. Must not call any import.
*/
WASQLITE_EXPORT(wasqlite_preinit)
void wasqlite_preinit(void){
  sqlite3_initialize();
  outReserve(4096);
  /* Grow the heap once, here, and hand the space back to malloc: the
  ** snapshot's initial memory then covers what a wake allocates, so a wake
  ** never calls memory.grow, and a reused pooling slot never has to change
  ** its page protection. The pages stay zero, so the image does not grow. */
  void *volatile headroom = malloc(HEAP_HEADROOM);  /* volatile: the compiler
                                                  ** would drop the pair */
  free(headroom);
}

WASQLITE_EXPORT(wasqlite_malloc)
void *wasqlite_malloc(int32_t n){
  return n>0 ? sqlite3_malloc(n) : 0;
}

WASQLITE_EXPORT(wasqlite_free)
void wasqlite_free(void *p){
  sqlite3_free(p);
}

/*
** The control block: two words the host writes straight into guest memory
** (it learns their address once, from wasqlite_control), so that it can
** reach a running statement without calling into the guest, which it
** cannot do from inside an epoch callback; and two counters it reads the
** same way after each call, to meter the actor's use.
*/
typedef struct Control Control;
struct Control {
  /* Nonzero: the call has passed its deadline or was interrupted. The
  ** progress handler ends the running statement with SQLITE_INTERRUPT,
  ** which rolls its writes back. The host clears it before each call. */
  volatile int32_t stop;
  /* Nonzero while the host runs its own SQL (migrations, journal upkeep):
  ** the authorizer lets it change what tenants may not. */
  volatile int32_t trusted;
  /* Since the connection opened: rows examined by the loops of every
  ** statement run (the sum of SQLITE_SCANSTAT_NVISIT: table rows and
  ** index entries, not those of trigger programs), and
  ** sqlite3_total_changes64() (rows inserted, updated or deleted, with
  ** trigger and foreign key actions). */
  int64_t rowsRead;
  int64_t rowsWritten;
};
static Control control;

WASQLITE_EXPORT(wasqlite_control)
Control *wasqlite_control(void){
  return &control;
}

/* Virtual machine steps between two looks at control.stop: a few
** microseconds of work, so a stop takes effect at once. */
#define PROGRESS_STEPS 1000

static int progressCheck(void *pArg){
  (void)pArg;
  return control.stop;
}

/*
** Settings a tenant's SQL must not change, since they keep the database
** durable (journal_mode, synchronous, locking_mode), bounded (max_page_count,
** mmap_size, heap limits), checked (cell_size_check, trusted_schema,
** writable_schema, schema_version) or in the layout the host maps onto the
** KV (page_size, temp_store and its directories). Reading them is allowed.
*/
static const char *const azGuardedPragma[] = {
  "busy_timeout", "cell_size_check", "data_store_directory",
  "hard_heap_limit", "journal_mode", "locking_mode", "max_page_count",
  "mmap_size", "page_size", "schema_version", "soft_heap_limit",
  "synchronous", "temp_store", "temp_store_directory", "threads",
  "trusted_schema", "writable_schema",
};

static int authorize(
  void *pArg, int action, const char *zArg1, const char *zArg2,
  const char *zDb, const char *zTrigger
){
  (void)pArg; (void)zDb; (void)zTrigger;
  if( control.trusted || action!=SQLITE_PRAGMA || zArg2==0 ) return SQLITE_OK;
  for(size_t i=0; i<sizeof(azGuardedPragma)/sizeof(azGuardedPragma[0]); i++){
    if( sqlite3_stricmp(zArg1, azGuardedPragma[i])==0 ) return SQLITE_DENY;
  }
  return SQLITE_OK;
}

/*
** Open the actor's database. Page size, journal mode and exclusive locking
** are compile-time defaults (wasm/flags), so opening does no I/O: the first
** statement reads the header. aLimit holds nLimit values for
** sqlite3_limit(), indexed by SQLITE_LIMIT_*; a negative one leaves that
** limit at its compile-time value.
*/
WASQLITE_EXPORT(wasqlite_open)
int32_t wasqlite_open(sqlite3 **ppDb, const int32_t *aLimit, int32_t nLimit){
  int rc = sqlite3_open_v2(DB_NAME, ppDb,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_EXRESCODE, 0);
  if( rc!=SQLITE_OK ) return rc;
  sqlite3_extended_result_codes(*ppDb, 1);
  for(int32_t i=0; i<nLimit; i++){
    if( aLimit[i]>=0 ) sqlite3_limit(*ppDb, i, aLimit[i]);
  }
  control.stop = 0;
  control.trusted = 0;
  sqlite3_progress_handler(*ppDb, PROGRESS_STEPS, progressCheck, 0);
  return sqlite3_set_authorizer(*ppDb, authorize, 0);
}

WASQLITE_EXPORT(wasqlite_close)
int32_t wasqlite_close(sqlite3 *db){
  return sqlite3_close(db);
}

WASQLITE_EXPORT(wasqlite_prepare)
int32_t wasqlite_prepare(
  sqlite3 *db, const char *zSql, int32_t nSql, PrepareResult *pOut
){
  const char *zTail = zSql;
  sqlite3_stmt *pStmt = 0;
  int rc = sqlite3_prepare_v3(db, zSql, nSql, 0, &pStmt, &zTail);
  pOut->pStmt = pStmt;
  pOut->tailOffset = zTail ? (int32_t)(zTail - zSql) : nSql;
  pOut->columnCount = pStmt ? sqlite3_column_count(pStmt) : 0;
  pOut->paramCount = pStmt ? sqlite3_bind_parameter_count(pStmt) : 0;
  return rc;
}

/* Read helpers for wasqlite_bind: each fails when the record runs short. */
static int takeU32(const uint8_t **pp, const uint8_t *pEnd, uint32_t *pOut){
  if( pEnd - *pp < 4 ) return 0;
  memcpy(pOut, *pp, 4);
  *pp += 4;
  return 1;
}

static int takeBytes(const uint8_t **pp, const uint8_t *pEnd, uint32_t n){
  if( (uint64_t)(pEnd - *pp) < n ) return 0;
  *pp += n;
  return 1;
}

/* Longest parameter name wasqlite_bind takes, in bytes, without a NUL. */
#define MAX_PARAM_NAME 255

/*
** The index of the parameter named by the n bytes at z (n<=MAX_PARAM_NAME),
** or 0 when the statement has none of that name. A name that starts with one
** of SQLite's prefixes binds exactly; one without binds to whichever of
** ":name", "@name" and "$name" the statement has, in that order, which is
** how libSQL's clients pass names.
*/
static int paramIndex(sqlite3_stmt *pStmt, const uint8_t *z, uint32_t n){
  static const char azPrefix[] = ":@$";
  char zName[1 + MAX_PARAM_NAME + 1];   /* Prefix, name, NUL */
  /* SQLite would read an embedded NUL as the end of the name, and bind a
  ** parameter the host did not name. */
  if( n>0 && memchr(z, 0, n)!=0 ) return 0;
  memcpy(zName + 1, z, n);
  zName[1 + n] = 0;
  if( n>0 && (z[0]==':' || z[0]=='@' || z[0]=='$' || z[0]=='?') ){
    return sqlite3_bind_parameter_index(pStmt, zName + 1);
  }
  for(int i=0; azPrefix[i]; i++){
    int idx;
    zName[0] = azPrefix[i];
    idx = sqlite3_bind_parameter_index(pStmt, zName);
    if( idx ) return idx;
  }
  return 0;
}

/*
** Bind every parameter from one encoded buffer (wasqlite_abi.h). Bindings
** left from an earlier execution are cleared first. Returns SQLITE_RANGE for
** an index or name the statement does not have, and WASQLITE_BAD_PARAMS for
** a buffer that does not decode.
*/
WASQLITE_EXPORT(wasqlite_bind)
int32_t wasqlite_bind(sqlite3_stmt *pStmt, const uint8_t *p, int32_t n){
  const uint8_t *pEnd = p + n;
  sqlite3_clear_bindings(pStmt);
  while( p<pEnd ){
    uint32_t idx, len;
    int rc;
    if( !takeU32(&p, pEnd, &idx) ) return WASQLITE_BAD_PARAMS;
    if( idx==0 ){
      const uint8_t *zStart;
      if( !takeU32(&p, pEnd, &len) || len>MAX_PARAM_NAME ) return WASQLITE_BAD_PARAMS;
      zStart = p;
      if( !takeBytes(&p, pEnd, len) ) return WASQLITE_BAD_PARAMS;
      idx = (uint32_t)paramIndex(pStmt, zStart, len);
      if( idx==0 ) return SQLITE_RANGE;
    }
    if( p>=pEnd ) return WASQLITE_BAD_PARAMS;
    switch( *p++ ){
      case WASQLITE_INTEGER: {
        int64_t v;
        if( pEnd - p < 8 ) return WASQLITE_BAD_PARAMS;
        memcpy(&v, p, 8);
        p += 8;
        rc = sqlite3_bind_int64(pStmt, (int)idx, v);
        break;
      }
      case WASQLITE_REAL: {
        double v;
        if( pEnd - p < 8 ) return WASQLITE_BAD_PARAMS;
        memcpy(&v, p, 8);
        p += 8;
        rc = sqlite3_bind_double(pStmt, (int)idx, v);
        break;
      }
      case WASQLITE_TEXT:
      case WASQLITE_BLOB: {
        int isText = p[-1]==WASQLITE_TEXT;
        const uint8_t *zStart;
        if( !takeU32(&p, pEnd, &len) ) return WASQLITE_BAD_PARAMS;
        zStart = p;
        if( !takeBytes(&p, pEnd, len) ) return WASQLITE_BAD_PARAMS;
        rc = isText
          ? sqlite3_bind_text64(pStmt, (int)idx, (const char *)zStart, len,
                                SQLITE_TRANSIENT, SQLITE_UTF8)
          : sqlite3_bind_blob64(pStmt, (int)idx, zStart, len, SQLITE_TRANSIENT);
        break;
      }
      case WASQLITE_NULL:
        rc = sqlite3_bind_null(pStmt, (int)idx);
        break;
      default:
        return WASQLITE_BAD_PARAMS;
    }
    if( rc!=SQLITE_OK ) return rc;
  }
  return SQLITE_OK;
}

/* Append column i of the current row to the output buffer. */
static int encodeColumn(sqlite3_stmt *pStmt, int i){
  int type = sqlite3_column_type(pStmt, i);
  int rc;
  uint8_t tag;
  switch( type ){
    case SQLITE_INTEGER: {
      int64_t v = sqlite3_column_int64(pStmt, i);
      if( (rc = outReserve(9))!=SQLITE_OK ) return rc;
      tag = WASQLITE_INTEGER;
      outPut(&tag, 1);
      outPut(&v, 8);
      return SQLITE_OK;
    }
    case SQLITE_FLOAT: {
      double v = sqlite3_column_double(pStmt, i);
      if( (rc = outReserve(9))!=SQLITE_OK ) return rc;
      tag = WASQLITE_REAL;
      outPut(&tag, 1);
      outPut(&v, 8);
      return SQLITE_OK;
    }
    case SQLITE_TEXT:
    case SQLITE_BLOB: {
      const void *z = type==SQLITE_TEXT
        ? (const void *)sqlite3_column_text(pStmt, i)
        : sqlite3_column_blob(pStmt, i);
      uint32_t n = (uint32_t)sqlite3_column_bytes(pStmt, i);
      /* A NULL pointer with a text or blob type means SQLite ran out of
      ** memory converting the value, except for a zero-length blob. */
      if( z==0 && n>0 ) return SQLITE_NOMEM;
      if( (rc = outReserve(5 + (int64_t)n))!=SQLITE_OK ) return rc;
      tag = type==SQLITE_TEXT ? WASQLITE_TEXT : WASQLITE_BLOB;
      outPut(&tag, 1);
      outPut(&n, 4);
      outPut(z, (int32_t)n);
      return SQLITE_OK;
    }
    default:
      if( (rc = outReserve(1))!=SQLITE_OK ) return rc;
      tag = WASQLITE_NULL;
      outPut(&tag, 1);
      return SQLITE_OK;
  }
}

/*
** Adds what pStmt examined since the last look to the control block's
** counters. Called whenever stepping pauses or ends, so that a statement
** the host abandons part-way has been metered up to there.
*/
static void meterStatement(sqlite3_stmt *pStmt){
  sqlite3_int64 nRead = 0;
  for(int i=0; ; i++){
    sqlite3_int64 nVisit = 0;
    if( sqlite3_stmt_scanstatus_v2(pStmt, i, SQLITE_SCANSTAT_NVISIT, 0, &nVisit) ) break;
    nRead += nVisit;
  }
  /* The reset walks every opcode: only when there is something to clear
  ** (an INSERT of values has no loop). */
  if( nRead>0 ){
    control.rowsRead += nRead;
    sqlite3_stmt_scanstatus_reset(pStmt);
  }
  control.rowsWritten = sqlite3_total_changes64(sqlite3_db_handle(pStmt));
}

/* Encoded bytes past which wasqlite_run and wasqlite_next stop stepping and
** let the host take the rows so far. */
#define ROW_BATCH_BYTES 65536

/* What wasqlite_run and wasqlite_next report (STEP RESULT in
** wasqlite_abi.h). */
typedef struct StepResult StepResult;
struct StepResult {
  uint8_t *pRows;        /* Rows encoded back to back (valid until the next */
  int32_t nBytes;        /*   call into this file), their total size, */
  int32_t nRows;         /*   and how many */
  int32_t nCol;          /* sqlite3_column_count() once stepped: values a row has */
  int64_t changes;       /* On SQLITE_DONE: rows changed (changesOf()) */
  int64_t lastRowid;     /* On SQLITE_DONE: sqlite3_last_insert_rowid() */
  int32_t nReprepare;    /* SQLITE_STMTSTATUS_REPREPARE once stepped */
  int32_t reserved;      /* Keeps the size a multiple of 8 */
};

/* Reports the columns the statement has now. SQLite re-prepares a statement
** whose schema changed inside sqlite3_step (the first of a run, before any
** row), and the new program may have other columns, or other names for as
** many: the count then changes, the counter always does, and the host
** fetches the columns again. */
static void reportColumns(sqlite3_stmt *pStmt, StepResult *pOut){
  pOut->nCol = sqlite3_column_count(pStmt);
  pOut->nReprepare = sqlite3_stmt_status(pStmt, SQLITE_STMTSTATUS_REPREPARE, 0);
  pOut->reserved = 0;
}

/* The rows a finished run of pStmt changed. sqlite3_changes64() is the
** count of the last INSERT, UPDATE or DELETE, which for a SELECT (or
** BEGIN, COMMIT) is an earlier statement's: those change nothing. */
static int64_t changesOf(sqlite3_stmt *pStmt){
  return sqlite3_stmt_readonly(pStmt) ? 0 : sqlite3_changes64(sqlite3_db_handle(pStmt));
}

/*
** Step until the statement ends or ROW_BATCH_BYTES of rows are encoded, so
** that a query returning a handful of rows costs one host call. Returns
** SQLITE_ROW when more rows may follow (call wasqlite_next), SQLITE_DONE when
** the rows in the buffer are the last, or an error. A statement that ends is
** reset right here, so a statement the host holds between calls is always
** ready to run again; sqlite3_reset keeps the error code and message of a
** failed step for wasqlite_errcode/errmsg.
*/
static int32_t stepBatch(sqlite3_stmt *pStmt, StepResult *pOut){
  int nCol;
  int rc;
  outLen = 0;
  pOut->nRows = 0;
  for(;;){
    rc = sqlite3_step(pStmt);
    /* Only now: this step may have re-prepared the statement. */
    nCol = sqlite3_column_count(pStmt);
    if( rc!=SQLITE_ROW ) break;
    for(int i=0; i<nCol; i++){
      int rc2 = encodeColumn(pStmt, i);
      if( rc2!=SQLITE_OK ){
        meterStatement(pStmt);
        sqlite3_reset(pStmt);
        return rc2;
      }
    }
    pOut->nRows++;
    if( outLen>=ROW_BATCH_BYTES ) break;
  }
  pOut->pRows = outBuf;
  pOut->nBytes = outLen;
  reportColumns(pStmt, pOut);
  meterStatement(pStmt);
  if( rc==SQLITE_ROW ) return rc;
  pOut->changes = changesOf(pStmt);
  pOut->lastRowid = sqlite3_last_insert_rowid(sqlite3_db_handle(pStmt));
  sqlite3_reset(pStmt);
  return rc;
}

/*
** Run a (reset) statement: bind the nParams bytes of encoded parameters
** and step. One host call runs a whole INSERT or UPDATE, or a query
** with up to ROW_BATCH_BYTES of results.
*/
WASQLITE_EXPORT(wasqlite_run)
int32_t wasqlite_run(
  sqlite3_stmt *pStmt, const uint8_t *pParams, int32_t nParams, StepResult *pOut
){
  /* Bind even an empty set: it clears what the last run bound. */
  int rc = wasqlite_bind(pStmt, pParams, nParams);
  if( rc!=SQLITE_OK ) return rc;
  return stepBatch(pStmt, pOut);
}

/*
** Run a (reset) statement once per parameter set, in order, and discard any
** rows: the sets lie back to back, each a u32 byte length and then records
** as wasqlite_run takes them. A bulk INSERT then costs one host call per
** few thousand rows instead of one per row. Stops at the first failure with
** its code, after resetting the statement; nRows in the StepResult counts
** the sets that ran to the end, changes is their sum, lastRowid is
** sqlite3_last_insert_rowid() after the last of them; nCol and nReprepare
** are as after wasqlite_run.
*/
WASQLITE_EXPORT(wasqlite_run_many)
int32_t wasqlite_run_many(
  sqlite3_stmt *pStmt, const uint8_t *pSets, int32_t nSets, StepResult *pOut
){
  const uint8_t *p = pSets;
  const uint8_t *pEnd = pSets + nSets;
  sqlite3 *db = sqlite3_db_handle(pStmt);
  int rc = SQLITE_DONE;
  pOut->pRows = outBuf;
  pOut->nBytes = 0;
  pOut->nRows = 0;
  pOut->changes = 0;
  while( p<pEnd ){
    uint32_t len;
    if( !takeU32(&p, pEnd, &len) || (uint32_t)(pEnd - p)<len ){
      rc = WASQLITE_BAD_PARAMS;
      break;
    }
    rc = wasqlite_bind(pStmt, p, (int32_t)len);
    if( rc!=SQLITE_OK ) break;
    p += len;
    while( (rc = sqlite3_step(pStmt))==SQLITE_ROW ){}
    sqlite3_reset(pStmt);
    if( rc!=SQLITE_DONE ) break;
    pOut->changes += changesOf(pStmt);
    pOut->nRows++;
  }
  reportColumns(pStmt, pOut);
  /* The loop counts add up across the sets' runs: one look for all. */
  meterStatement(pStmt);
  pOut->lastRowid = sqlite3_last_insert_rowid(db);
  return rc;
}

/* Continue a statement that returned SQLITE_ROW. */
WASQLITE_EXPORT(wasqlite_next)
int32_t wasqlite_next(sqlite3_stmt *pStmt, StepResult *pOut){
  return stepBatch(pStmt, pOut);
}

/* Append z to the output buffer as a u32 length and its bytes; a NULL z as
** the length WASQLITE_NO_TEXT alone. */
static int putText(const char *z){
  uint32_t n = z ? (uint32_t)strlen(z) : WASQLITE_NO_TEXT;
  int rc = outReserve(4 + (z ? (int64_t)n : 0));
  if( rc!=SQLITE_OK ) return rc;
  outPut(&n, 4);
  if( z ) outPut(z, (int32_t)n);
  return SQLITE_OK;
}

/*
** Encode the columns of a statement (COLUMN ENCODING in wasqlite_abi.h) into
** the shared output buffer: each one's name, then its declared type, which
** is NULL for anything but a table column (an expression, say).
*/
WASQLITE_EXPORT(wasqlite_column_names)
int32_t wasqlite_column_names(sqlite3_stmt *pStmt, Buffer *pOut){
  int nCol = sqlite3_column_count(pStmt);
  int i, rc;
  outLen = 0;
  for(i=0; i<nCol; i++){
    const char *z = sqlite3_column_name(pStmt, i);
    if( z==0 ) return SQLITE_NOMEM;
    if( (rc = putText(z))!=SQLITE_OK ) return rc;
    if( (rc = putText(sqlite3_column_decltype(pStmt, i)))!=SQLITE_OK ) return rc;
  }
  pOut->p = outBuf;
  pOut->n = outLen;
  return SQLITE_OK;
}

/*
** Encode what SQLite says about a prepared statement without running it
** (DESCRIPTION ENCODING in wasqlite_abi.h) into the shared output buffer:
** whether it is read-only and an EXPLAIN, and its parameters' names.
*/
WASQLITE_EXPORT(wasqlite_describe)
int32_t wasqlite_describe(sqlite3_stmt *pStmt, Buffer *pOut){
  uint32_t aHead[3];
  int nParam = sqlite3_bind_parameter_count(pStmt);
  int i, rc;
  aHead[0] = (uint32_t)sqlite3_stmt_readonly(pStmt);
  aHead[1] = (uint32_t)sqlite3_stmt_isexplain(pStmt);
  aHead[2] = (uint32_t)nParam;
  outLen = 0;
  if( (rc = outReserve(sizeof(aHead)))!=SQLITE_OK ) return rc;
  outPut(aHead, sizeof(aHead));
  for(i=1; i<=nParam; i++){
    if( (rc = putText(sqlite3_bind_parameter_name(pStmt, i)))!=SQLITE_OK ) return rc;
  }
  pOut->p = outBuf;
  pOut->n = outLen;
  return SQLITE_OK;
}

/*
** Set what sqlite3_last_insert_rowid() reports, so that a server handing the
** connection to a new client can start it from 0.
*/
WASQLITE_EXPORT(wasqlite_set_last_insert_rowid)
void wasqlite_set_last_insert_rowid(sqlite3 *db, int64_t iRowid){
  sqlite3_set_last_insert_rowid(db, iRowid);
}

WASQLITE_EXPORT(wasqlite_finalize)
int32_t wasqlite_finalize(sqlite3_stmt *pStmt){
  return sqlite3_finalize(pStmt);
}

WASQLITE_EXPORT(wasqlite_errcode)
int32_t wasqlite_errcode(sqlite3 *db){
  return sqlite3_extended_errcode(db);
}

/* NUL-terminated UTF-8, owned by SQLite, valid until the next API call. */
WASQLITE_EXPORT(wasqlite_errmsg)
const char *wasqlite_errmsg(sqlite3 *db){
  return sqlite3_errmsg(db);
}

WASQLITE_EXPORT(wasqlite_interrupt)
void wasqlite_interrupt(sqlite3 *db){
  sqlite3_interrupt(db);
}

WASQLITE_EXPORT(wasqlite_autocommit)
int32_t wasqlite_autocommit(sqlite3 *db){
  return sqlite3_get_autocommit(db);
}
