/*
 * triggers.h
 *     Helpers of rungate's C triggers, shared by triggers.c (the run, audit,
 *     fence and tenant guards) and optypes.c (the operation-type check).
 */
#ifndef RUNGATE_TRIGGERS_H
#define RUNGATE_TRIGGERS_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "commands/trigger.h"
#include "fmgr.h"

/* The trigger data of a row-level (or TRUNCATE) call by the trigger manager. */
extern TriggerData *RgTriggerData(FunctionCallInfo fcinfo, const char *funcname);

/* "Go on unchanged": the new row of an UPDATE, the row of INSERT/DELETE. */
extern Datum RgUnchanged(TriggerData *trigdata);

/* Attribute number of a column of the trigger's table; it must exist. */
extern int	RgAttnum(TupleDesc tupdesc, const char *column);

/* A text column of a tuple as a C string, NULL when null. */
extern char *RgTupleText(HeapTuple tuple, TupleDesc tupdesc, int attnum);

/* Equal strings, or both NULL. */
extern bool RgTextEqual(const char *a, const char *b);

#endif							/* RUNGATE_TRIGGERS_H */
