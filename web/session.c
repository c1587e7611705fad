/*-------------------------------------------------------------------------
 *
 * session.c
 *	  chancy-web's logins and queries.  A login is a libpq connection as
 *	  the role and password typed in, kept for the session: every query of
 *	  that session runs on it, so PostgreSQL's privileges (and chancy's row
 *	  level security) decide what the role sees and may do.  There is no
 *	  account store here, and the server must have checked the password.
 *
 *	  /metrics and /health, for machines, run on a connection of their own
 *	  made with the command line's conninfo as it is.
 *
 *	  All of it runs in libmicrohttpd's one thread (main.c): no locks.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "web.h"

#define MAX_SESSIONS 100
#define MAX_ROLE_SESSIONS 10

/*
 * What each connection has unless the conninfo says otherwise: the one
 * thread must not wait long for a server that is gone, at connection time
 * or (keepalives, unacknowledged data) during a query.
 */
static const char *const defaults[][2] = {
	{"connect_timeout", "10"},
	{"keepalives", "1"},
	{"keepalives_idle", "5"},
	{"keepalives_interval", "5"},
	{"keepalives_count", "3"},
	{"tcp_user_timeout", "15000"},
};
#define NDEFAULTS (sizeof(defaults) / sizeof(defaults[0]))

static Session *sessions[MAX_SESSIONS];
static PGconn *machine;
static uint64_t uses;			/* counts session uses: orders them */

/* Fill out with TOKEN_LEN hex digits of the kernel's randomness. */
void
random_token(char *out)
{
	unsigned char raw[TOKEN_LEN / 2];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw))
	{
		perror("chancy-web: getrandom");
		exit(1);
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		sprintf(out + 2 * i, "%02x", raw[i]);
	out[TOKEN_LEN] = '\0';
}

/* Compare two tokens in a time that does not depend on where they differ. */
static bool
same_token(const char *a, const char *b)
{
	unsigned char diff = 0;

	if (a == NULL || strlen(a) != TOKEN_LEN)
		return false;
	for (int i = 0; i < TOKEN_LEN; i++)
		diff |= (unsigned char) (a[i] ^ b[i]);
	return diff == 0;
}

/* The session whose id the cookie carries, or NULL. */
Session *
session_find(const char *id)
{
	for (int i = 0; i < MAX_SESSIONS; i++)
		if (sessions[i] && same_token(id, sessions[i]->id))
		{
			sessions[i]->last_used = time(NULL);
			sessions[i]->use = ++uses;
			return sessions[i];
		}
	return NULL;
}

/* Whether token is the session's CSRF token. */
bool
session_csrf_ok(Session *s, const char *token)
{
	return same_token(token, s->csrf);
}

static void
session_free(int i)
{
	PQfinish(sessions[i]->conn);
	free(sessions[i]);
	sessions[i] = NULL;
}

/* Log out: the session and its connection end. */
void
session_logout(Session *s)
{
	for (int i = 0; i < MAX_SESSIONS; i++)
		if (sessions[i] == s)
			session_free(i);
}

/* End the sessions idle for longer than --session-minutes. */
void
session_expire(void)
{
	time_t		now = time(NULL);

	for (int i = 0; i < MAX_SESSIONS; i++)
		if (sessions[i] && now - sessions[i]->last_used > web_session_minutes * 60)
			session_free(i);
}

/* Say fmt to the session's role on its next page. */
void
session_flash(Session *s, bool error, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(s->flash, sizeof(s->flash), fmt, ap);
	va_end(ap);
	s->flash_error = error;
}

/*
 * notice
 *		libpq's notice receiver: a NOTICE (a cancel of a finished job, say)
 *		is added to the message the action leaves, not dropped.
 */
static void
notice(void *arg, const PGresult *res)
{
	Session    *s = arg;
	size_t		len = strlen(s->flash);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (msg && len + 3 < sizeof(s->flash))
		snprintf(s->flash + len, sizeof(s->flash) - len, "%s%s.", len ? " " : "", msg);
}

/*
 * setup
 *		Prepare a new (or reset) connection: chancy's schema on the
 *		search_path after pg_catalog, so that neither the role's objects nor
 *		another role's shadow what the queries name, and a statement time
 *		limit.  Returns false with the reason in err.
 */
static bool
setup(PGconn *conn, char *err, size_t errlen)
{
	PGresult   *res;
	bool		ok;

	res = PQexec(conn,
				 "SELECT pg_catalog.set_config('search_path', 'pg_catalog, '"
				 " OPERATOR(pg_catalog.||) pg_catalog.quote_ident(n.nspname)"
				 " OPERATOR(pg_catalog.||) ', pg_temp', false),"
				 " pg_catalog.set_config('statement_timeout', '30s', false)"
				 " FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n"
				 " ON n.oid OPERATOR(pg_catalog.=) e.extnamespace"
				 " WHERE e.extname OPERATOR(pg_catalog.=) 'chancy'");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (!ok)
		snprintf(err, errlen, "%s", PQresultStatus(res) == PGRES_TUPLES_OK ?
				 "chancy is not installed in this database (CREATE EXTENSION chancy)" :
				 PQerrorMessage(conn));
	PQclear(res);
	return ok;
}

/*
 * free_slot
 *		A free place for a new session of role: the sessions idle too long
 *		end first, and a role with MAX_ROLE_SESSIONS sessions loses the one
 *		it used least recently (so that one password cannot take every
 *		place).  -1 if all are taken.
 */
static int
free_slot(const char *role)
{
	int			slot = -1;
	int			oldest = -1;
	int			mine = 0;

	session_expire();
	for (int i = 0; i < MAX_SESSIONS; i++)
	{
		if (sessions[i] == NULL)
		{
			if (slot < 0)
				slot = i;
			continue;
		}
		if (strcmp(sessions[i]->role, role) != 0)
			continue;
		mine++;
		if (oldest < 0 || sessions[i]->use < sessions[oldest]->use)
			oldest = i;
	}
	if (mine >= MAX_ROLE_SESSIONS)
	{
		session_free(oldest);
		slot = oldest;
	}
	return slot;
}

/*
 * session_login
 *		Connect as user with password: the conninfo of the command line with
 *		its user and password (and password file) replaced.  A connection the
 *		server let in without asking for the password (trust, peer, a client
 *		certificate) is refused: it would let anyone who can reach the page
 *		be that role.  Returns the new session, or NULL with r->error set.
 */
Session *
session_login(Request *r, const char *user, const char *password)
{
	PQconninfoOption *opts;
	const char *kw[64];
	const char *val[64];
	int			n = 0;
	char	   *err = NULL;
	PGconn	   *conn;
	Session    *s;
	int			slot = -1;

	opts = PQconninfoParse(web_conninfo, &err);
	if (opts == NULL)
	{
		snprintf(r->error, sizeof(r->error), "bad conninfo: %s", err ? err : "out of memory");
		PQfreemem(err);
		return NULL;
	}
	for (size_t d = 0; d < NDEFAULTS; d++)
	{
		kw[n] = defaults[d][0];
		val[n++] = defaults[d][1];
	}
	for (PQconninfoOption *o = opts; o->keyword && n < 56; o++)
	{
		if (o->val && strcmp(o->keyword, "user") != 0 &&
			strcmp(o->keyword, "password") != 0 && strcmp(o->keyword, "passfile") != 0 &&
			strcmp(o->keyword, "application_name") != 0)
		{
			kw[n] = o->keyword;
			val[n++] = o->val;
		}
	}
	kw[n] = "user";
	val[n++] = user;
	kw[n] = "password";
	val[n++] = password;
	kw[n] = "passfile";
	val[n++] = "/dev/null";
	kw[n] = "application_name";
	val[n++] = "chancy-web";
	kw[n] = NULL;
	val[n] = NULL;
	conn = PQconnectdbParams(kw, val, 0);
	PQconninfoFree(opts);

	if (PQstatus(conn) != CONNECTION_OK)
		snprintf(r->error, sizeof(r->error), "%s", PQerrorMessage(conn));
	else if (!PQconnectionUsedPassword(conn))
		snprintf(r->error, sizeof(r->error),
				 "The server let role \"%s\" in without checking its password: chancy-web takes only logins whose password the server checks (pg_hba.conf: scram-sha-256 or md5 for chancy-web's connections).",
				 user);
	else
		setup(conn, r->error, sizeof(r->error));
	if (!r->error[0] && (slot = free_slot(PQuser(conn))) < 0)
		snprintf(r->error, sizeof(r->error),
				 "%d sessions are open, the most chancy-web keeps: try again once one has ended",
				 MAX_SESSIONS);
	if (r->error[0])
	{
		PQfinish(conn);
		return NULL;
	}

	s = calloc(1, sizeof(Session));
	if (s == NULL)
		xrealloc(NULL, (size_t) -1);	/* reports and exits */
	random_token(s->id);
	random_token(s->csrf);
	snprintf(s->role, sizeof(s->role), "%s", PQuser(conn));
	s->conn = conn;
	s->last_used = time(NULL);
	s->use = ++uses;
	PQsetNoticeReceiver(conn, notice, s);
	sessions[slot] = s;
	return s;
}

/*
 * http_status
 *		The HTTP status for a failed statement's SQLSTATE: the caller's
 *		fault (400), not allowed (403), not there (404), not now (409), not
 *		here or too slow (503).
 */
static int
http_status(const char *sqlstate)
{
	if (sqlstate == NULL)
		return 500;
	if (strcmp(sqlstate, "42501") == 0)
		return 403;
	if (strcmp(sqlstate, "42704") == 0)
		return 404;
	if (strcmp(sqlstate, "55000") == 0 || strcmp(sqlstate, "23505") == 0)
		return 409;
	/* a statement timeout, a standby: not the request's fault, try later */
	if (strcmp(sqlstate, "57014") == 0 || strcmp(sqlstate, "25006") == 0)
		return 503;
	if (strncmp(sqlstate, "22", 2) == 0)
		return 400;
	return 500;
}

/*
 * failed
 *		Turn a failed statement into the request's error page, with the
 *		server's message, detail and hint.
 */
static void
failed(Request *r, PGconn *conn, PGresult *res)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;

	if (PQstatus(conn) != CONNECTION_OK)
		error_page(r, 503, "The connection to the database was lost (%s). It is opened again on your next request.",
				   msg ? msg : PQerrorMessage(conn));
	else
		error_page(r, http_status(sqlstate), "%s.%s%s%s%s", msg ? msg : PQerrorMessage(conn),
				   detail ? " " : "", detail ? detail : "", hint ? " " : "", hint ? hint : "");
}

/* Whether the server accepts connections (PQping: no login needed). */
static bool
server_answers(void)
{
	const char *kw[] = {"connect_timeout", "dbname", NULL};
	const char *val[] = {defaults[0][1], web_conninfo, NULL};

	return PQpingParams(kw, val, 1) == PQPING_OK;
}

/*
 * query
 *		Run sql with its parameters (text, NULL for SQL NULL) on the session's
 *		connection.  A connection that was lost is opened again first; if
 *		the server is up but no longer lets the role in, the session ends.
 *		Returns the result, or NULL when the request's page has become the
 *		error page.
 */
PGresult *
query(Request *r, const char *sql, int nparams, const char *const *params)
{
	PGconn	   *conn = r->session->conn;
	PGresult   *res;

	if (PQstatus(conn) != CONNECTION_OK)
	{
		char		err[512] = "";

		PQreset(conn);
		if (PQstatus(conn) != CONNECTION_OK && server_answers())
		{
			/* up, but it no longer takes the role: password, NOLOGIN, dropped */
			snprintf(err, sizeof(err), "%s", PQerrorMessage(conn));
			session_logout(r->session);
			r->session = NULL;
			snprintf(r->cookie, sizeof(r->cookie),
					 "chancy_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
			error_page(r, 401, "Log in again: the server no longer lets the role in (%s).", err);
			return NULL;
		}
		if (PQstatus(conn) != CONNECTION_OK || !setup(conn, err, sizeof(err)))
		{
			error_page(r, 503, "The database cannot be reached: %s",
					   err[0] ? err : PQerrorMessage(conn));
			return NULL;
		}
	}
	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
		return res;
	failed(r, conn, res);
	PQclear(res);
	return NULL;
}

/*
 * machine_query
 *		Run sql (no parameters) for /metrics or /health on the connection of
 *		the command line's conninfo, opened when first needed and again when
 *		lost.  NULL, with r->error set, if that fails.
 */
PGresult *
machine_query(Request *r, const char *sql)
{
	PGresult   *res;

	if (machine == NULL || PQstatus(machine) != CONNECTION_OK)
	{
		char		err[512] = "";

		PQfinish(machine);
		const char *kw[NDEFAULTS + 3];
		const char *val[NDEFAULTS + 3];
		int			n = 0;

		/* the defaults, then the conninfo over them */
		for (size_t d = 0; d < NDEFAULTS; d++)
		{
			kw[n] = defaults[d][0];
			val[n++] = defaults[d][1];
		}
		kw[n] = "dbname";
		val[n++] = web_conninfo;
		kw[n] = "fallback_application_name";
		val[n++] = "chancy-web";
		kw[n] = NULL;
		val[n] = NULL;
		machine = PQconnectdbParams(kw, val, 1);
		if (PQstatus(machine) != CONNECTION_OK || !setup(machine, err, sizeof(err)))
		{
			snprintf(r->error, sizeof(r->error), "%s",
					 err[0] ? err : PQerrorMessage(machine));
			PQfinish(machine);
			machine = NULL;
			return NULL;
		}
	}
	res = PQexec(machine, sql);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	snprintf(r->error, sizeof(r->error), "%s", PQerrorMessage(machine));
	PQclear(res);
	return NULL;
}
