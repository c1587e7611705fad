/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The differences between the PostgreSQL versions chancy builds for, in
 *	  one place.  It is tested on PostgreSQL 15 (the version these machines
 *	  have); the other cases are written from each version's headers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHANCY_COMPAT_H
#define CHANCY_COMPAT_H

#include "catalog/pg_database.h"
#include "catalog/pg_proc.h"
#include "utils/acl.h"

/* PostgreSQL 16 folded the per-object ACL and owner checks into one each */
#if PG_VERSION_NUM >= 160000
#define chancy_proc_aclcheck(proc, role, mode) \
	object_aclcheck(ProcedureRelationId, (proc), (role), (mode))
#define chancy_database_ownercheck(db, role) \
	object_ownercheck(DatabaseRelationId, (db), (role))
#else
#define chancy_proc_aclcheck(proc, role, mode) \
	pg_proc_aclcheck((proc), (role), (mode))
#define chancy_database_ownercheck(db, role) \
	pg_database_ownercheck((db), (role))
#endif

/* PostgreSQL 15 added the hook to request shared memory, and reserved prefixes */
#if PG_VERSION_NUM >= 150000
#define CHANCY_HAS_SHMEM_REQUEST_HOOK 1
#else
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

#endif							/* CHANCY_COMPAT_H */
