/*-------------------------------------------------------------------------
 *
 * pages.c
 *	  chancy-web's pages and actions.  Every page reads chancy's views and
 *	  tables as the logged-in role; every action calls one of chancy's SQL
 *	  functions.  The SQL is fixed text here: what a client sends reaches it
 *	  only as bound parameters, so nothing it sends runs as SQL.
 *
 *	  GET:  /  /jobs  /jobs/ID  /queues  /schedules  /workers  /limits
 *			/workflows  /workflows/ID  /login  /style.css  /metrics  /health
 *	  POST: /login  /logout  /jobs/ID/cancel  /jobs/ID/retry  /jobs/retry
 *			/queues/pause  /queues/resume  /queues/concurrency
 *			/workflows/ID/cancel  /workflows/ID/retry
 *
 *	  A POST needs the session's CSRF token, and, when the browser says
 *	  where the form came from (Origin), that it came from here.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "web.h"

#define PAGE_ROWS 50

typedef void (*Handler) (Request *r, const char *id, const void *data);

/* the GET arguments of /jobs */
static const char *const job_filter[] = {"queue", "state", "name", "since", "until", "before", NULL};

/* The states a job may be in, for the filter. */
static const char *const states[] = {
	"pending", "running", "retrying", "succeeded", "failed", "cancelled", NULL
};

/* Answer with a redirect to the page "to" (303: the browser GETs it). */
static void
redirect(Request *r, const char *to)
{
	r->status = MHD_HTTP_SEE_OTHER;
	snprintf(r->location, sizeof(r->location), "%s", to);
}

/*
 * action
 *		Run an action's statement; on success tell the role what happened
 *		(with any NOTICE the function raised) on the page "to".  On failure
 *		the answer is the error page, with the server's message.
 */
static void
action(Request *r, const char *to, const char *sql, int nparams, const char *const *params,
	   const char *fmt, const char *what)
{
	Session    *s = r->session;
	char		notices[sizeof(s->flash)];
	PGresult   *res;

	s->flash[0] = '\0';
	res = query(r, sql, nparams, params);
	if (res == NULL)
		return;
	snprintf(notices, sizeof(notices), "%s", s->flash);
	session_flash(s, false, fmt, what, PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
	if (notices[0])
		snprintf(s->flash + strlen(s->flash), sizeof(s->flash) - strlen(s->flash), " %s", notices);
	PQclear(res);
	redirect(r, to);
}

/* Context of known_args(): the names allowed, and the first other one. */
typedef struct ArgCheck
{
	const char *const *allowed;
	const char *unknown;
} ArgCheck;

static enum MHD_Result
check_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	ArgCheck   *c = cls;

	for (const char *const *a = c->allowed; *a; a++)
		if (strcmp(*a, key) == 0)
			return MHD_YES;
	c->unknown = key;
	return MHD_NO;
}

/* Whether the request's GET arguments are among allowed; else a 400 page. */
static bool
known_args(Request *r, const char *const *allowed)
{
	ArgCheck	c = {allowed, NULL};

	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, check_arg, &c);
	if (c.unknown)
		error_page(r, MHD_HTTP_BAD_REQUEST, "This page takes no parameter \"%s\".", c.unknown);
	return c.unknown == NULL;
}

/* A hidden field with the session's CSRF token, for a form. */
static void
csrf_field(Request *r)
{
	buf_printf(&r->body, "<input type=\"hidden\" name=\"csrf\" value=\"%s\">", r->session->csrf);
}

/* The start of a form that POSTs to action, with the session's CSRF token. */
static void
form_begin(Request *r, const char *action)
{
	buf_puts(&r->body, "<form class=\"inline\" method=\"post\" action=\"");
	buf_puts(&r->body, action);
	buf_puts(&r->body, "\">");
	csrf_field(r);
}

/* The end of a form: its button. */
static void
form_end(Request *r, const char *label)
{
	buf_puts(&r->body, "<button>");
	buf_html(&r->body, label);
	buf_puts(&r->body, "</button></form> ");
}

/* A form of one button that POSTs to prefix, then the id, then suffix. */
static void
button(Request *r, const char *prefix, const char *id, const char *suffix, const char *label)
{
	Buf			action = {0};

	buf_html(&action, prefix);
	buf_url(&action, id);
	buf_html(&action, suffix);
	form_begin(r, action.data);
	form_end(r, label);
	buf_free(&action);
}

/* A form of an action on queue, with a concurrency field if it is given. */
static void
queue_form(Request *r, const char *action, const char *queue, const char *concurrency,
		   const char *label)
{
	form_begin(r, action);
	if (concurrency)
	{
		buf_puts(&r->body, "<input name=\"concurrency\" size=\"3\" value=\"");
		buf_html(&r->body, concurrency);
		buf_puts(&r->body, "\">");
	}
	buf_puts(&r->body, "<input type=\"hidden\" name=\"queue\" value=\"");
	buf_html(&r->body, queue);
	buf_puts(&r->body, "\">");
	form_end(r, label);
}

/* Columns from to to of res's first row as a table of name and value. */
static void
record_table(Request *r, PGresult *res, int from, int to)
{
	buf_puts(&r->body, "<table class=\"record\">");
	for (int c = from; c <= to; c++)
	{
		if (PQgetisnull(res, 0, c))
			continue;
		buf_puts(&r->body, "<tr><th>");
		buf_html(&r->body, PQfname(res, c));
		buf_printf(&r->body, "</th><td data-col=\"%s\"><pre>", PQfname(res, c));
		buf_html(&r->body, PQgetvalue(res, 0, c));
		buf_puts(&r->body, "</pre></td></tr>");
	}
	buf_puts(&r->body, "</table>");
}

/* A section: a heading (if any), then the table of a query without parameters. */
static bool
section(Request *r, const char *title, const char *sql, const char *link_column,
		const char *link_prefix)
{
	PGresult   *res = query(r, sql, 0, NULL);

	if (res == NULL)
		return false;
	if (title)
	{
		buf_puts(&r->body, "<h2>");
		buf_html(&r->body, title);
		buf_puts(&r->body, "</h2>");
	}
	result_table(r, res, link_column, link_prefix);
	PQclear(res);
	return true;
}

/*
 * charts
 *		Per queue, three charts of the last hour from chancy_stats_history
 *		(a row a minute, role and job name: summed, or for the percentiles
 *		the slowest job name's): runs ended a minute, and wait and run time.
 */
static bool
charts(Request *r)
{
	PGresult   *res;
	int			n;

	res = query(r,
				"SELECT queue, 60 - (extract(epoch FROM date_trunc('minute', now()) - minute)"
				"  / 60)::int AS i,"
				" sum(succeeded + failed + retried + cancelled + crashed)::float8,"
				" sum(failed + crashed)::float8,"
				" max(wait_p50_ms), max(wait_p95_ms), max(run_p50_ms), max(run_p95_ms)"
				" FROM chancy_stats_history"
				" WHERE minute >= date_trunc('minute', now()) - interval '60 minutes'"
				"  AND minute < date_trunc('minute', now())"
				" GROUP BY 1, 2 ORDER BY 1, 2", 0, NULL);
	if (res == NULL)
		return false;
	n = PQntuples(res);
	buf_puts(&r->body, "<h2>The last hour</h2>");
	if (n == 0)
		buf_puts(&r->body, "<p class=\"empty\">No job ended in the last hour (the current minute is written when it ends).</p>");
	for (int row = 0; row < n;)
	{
		const char *queue = PQgetvalue(res, row, 0);
		Series		runs[2] = {{.label = "runs"}, {.label = "failed"}};
		Series		wait[2] = {{.label = "p50"}, {.label = "p95"}};
		Series		run[2] = {{.label = "p50"}, {.label = "p95"}};
		Buf			id = {0};

		for (int i = 0; i < CHART_POINTS; i++)
		{
			runs[0].v[i] = runs[1].v[i] = 0;	/* no row: nothing ended */
			wait[0].v[i] = wait[1].v[i] = run[0].v[i] = run[1].v[i] = NAN;
		}
		for (; row < n && strcmp(PQgetvalue(res, row, 0), queue) == 0; row++)
		{
			int			i = atoi(PQgetvalue(res, row, 1));
			Series	   *to[6] = {&runs[0], &runs[1], &wait[0], &wait[1], &run[0], &run[1]};

			for (int c = 0; c < 6 && i >= 0 && i < CHART_POINTS; c++)
				if (!PQgetisnull(res, row, c + 2))
					to[c]->v[i] = atof(PQgetvalue(res, row, c + 2));
		}
		buf_puts(&r->body, "<h3>Queue ");
		buf_html(&r->body, queue);
		buf_puts(&r->body, "</h3><div class=\"charts\">");
		buf_puts(&id, "runs-");
		buf_puts(&id, queue);
		svg_chart(&r->body, id.data, "Runs ended a minute", "", runs, 2);
		id.len = 0;
		buf_puts(&id, "wait-");
		buf_puts(&id, queue);
		svg_chart(&r->body, id.data, "Wait from due to start", " ms", wait, 2);
		id.len = 0;
		buf_puts(&id, "run-");
		buf_puts(&id, queue);
		svg_chart(&r->body, id.data, "Run time", " ms", run, 2);
		buf_puts(&r->body, "</div>");
		buf_free(&id);
	}
	PQclear(res);
	return true;
}

/* GET /: health, jobs per queue and state, the last hour's charts. */
static void
overview(Request *r, const char *id, const void *data)
{
	PGresult   *res;

	if ((res = query(r, "SELECT \"check\", status, message FROM chancy_health()", 0, NULL)) == NULL)
		return;
	page_begin(r, "Overview");
	buf_puts(&r->body, "<div class=\"tiles\" id=\"health\">");
	for (int row = 0; row < PQntuples(res); row++)
	{
		buf_puts(&r->body, "<div class=\"tile ");
		buf_html(&r->body, PQgetvalue(res, row, 1));
		buf_puts(&r->body, "\"><b>");
		buf_html(&r->body, PQgetvalue(res, row, 0));
		buf_puts(&r->body, "</b>");
		buf_html(&r->body, PQgetvalue(res, row, 2));
		buf_puts(&r->body, "</div>");
	}
	buf_puts(&r->body, "</div>");
	PQclear(res);
	if (!section(r, "Jobs by queue and state",
				 "SELECT queue, pending, scheduled, running, retrying, succeeded, failed,"
				 " cancelled, date_trunc('second', oldest_pending_age) AS oldest_pending_age,"
				 " concurrency, executors, paused_until"
				 " FROM chancy_queue_stats ORDER BY queue", "queue", "/jobs?queue=") ||
		!charts(r) ||
		!section(r, "Since the server started",
				 "SELECT queue, job, sum(started) AS started, sum(succeeded) AS succeeded,"
				 " sum(failed) AS failed, sum(retried) AS retried, sum(crashed) AS crashed,"
				 " round(max(wait_p50_ms)::numeric, 1) AS wait_p50_ms,"
				 " round(max(wait_p95_ms)::numeric, 1) AS wait_p95_ms,"
				 " round(max(run_p50_ms)::numeric, 1) AS run_p50_ms,"
				 " round(max(run_p95_ms)::numeric, 1) AS run_p95_ms,"
				 " round(max(run_p99_ms)::numeric, 1) AS run_p99_ms"
				 " FROM chancy_stats WHERE database = current_database()"
				 " GROUP BY queue, job ORDER BY queue, job", NULL, NULL))
		return;
	page_end(r);
}

/* GET /jobs: the jobs, newest first, filtered; and the bulk retry. */
static void
jobs_page(Request *r, const char *id, const void *data)
{
	const char *p[6] = {arg(r, "queue"), arg(r, "state"), arg(r, "name"), arg(r, "since"),
	arg(r, "until"), arg(r, "before")};
	bool		known = p[1] == NULL;
	PGresult   *res;
	int			n;

	for (const char *const *s = states; *s && !known; s++)
		known = strcmp(*s, p[1]) == 0;
	if (!known)
	{
		error_page(r, MHD_HTTP_BAD_REQUEST, "\"%s\" is not a job state: pending, running, retrying, succeeded, failed or cancelled.", p[1]);
		return;
	}
	if (p[5] && strspn(p[5], "0123456789") != strlen(p[5]))
	{
		error_page(r, MHD_HTTP_BAD_REQUEST, "\"before\" takes a job id, not \"%s\".", p[5]);
		return;
	}
	res = query(r,
				"SELECT id, name, queue, state, priority, attempts, max_attempts,"
				" pushed_by::text AS pushed_by, created_at, completed_at"
				" FROM chancy_jobs"
				" WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR state::text = $2)"
				"  AND ($3::text IS NULL OR name = $3)"
				"  AND ($4::timestamptz IS NULL OR created_at >= $4)"
				"  AND ($5::timestamptz IS NULL OR created_at < $5)"
				"  AND ($6::int8 IS NULL OR id < $6)"
				" ORDER BY id DESC LIMIT 50", 6, p);
	if (res == NULL)
		return;
	page_begin(r, "Jobs");
	buf_puts(&r->body, "<form method=\"get\" action=\"/jobs\" id=\"filter\">Queue <input name=\"queue\" value=\"");
	buf_html(&r->body, p[0]);
	buf_puts(&r->body, "\"> State <select name=\"state\"><option value=\"\">any</option>");
	for (const char *const *s = states; *s; s++)
		buf_printf(&r->body, "<option%s>%s</option>", p[1] && strcmp(p[1], *s) == 0 ? " selected" : "", *s);
	buf_puts(&r->body, "</select> Name <input name=\"name\" value=\"");
	buf_html(&r->body, p[2]);
	buf_puts(&r->body, "\"> Pushed since <input name=\"since\" placeholder=\"2026-11-30 10:00\" value=\"");
	buf_html(&r->body, p[3]);
	buf_puts(&r->body, "\"> until <input name=\"until\" value=\"");
	buf_html(&r->body, p[4]);
	buf_puts(&r->body, "\"> <button>Filter</button></form>");
	result_table(r, res, "id", "/jobs/");
	n = PQntuples(res);
	if (n == PAGE_ROWS)
	{
		buf_puts(&r->body, "<p><a id=\"older\" href=\"/jobs?before=");
		buf_url(&r->body, PQgetvalue(res, n - 1, 0));
		for (int i = 0; i < 5; i++)
			if (p[i])
			{
				buf_printf(&r->body, "&amp;%s=", job_filter[i]);
				buf_url(&r->body, p[i]);
			}
		buf_puts(&r->body, "\">Older jobs</a></p>");
	}
	PQclear(res);

	buf_puts(&r->body, "<form method=\"post\" action=\"/jobs/retry\" id=\"bulk-retry\"><fieldset>"
			 "<legend>Retry failed jobs (at most 1000 at a time, oldest first)</legend>");
	csrf_field(r);
	buf_puts(&r->body, "Queue <input name=\"queue\" value=\"");
	buf_html(&r->body, p[0]);
	buf_puts(&r->body, "\"> Name <input name=\"name\" value=\"");
	buf_html(&r->body, p[2]);
	buf_puts(&r->body, "\"> Failed after <input name=\"failed_after\"> before <input name=\"failed_before\">"
			 " <button>Retry</button></fieldset></form>");
	page_end(r);
}

/*
 * row_by_id
 *		The row sql ($1 the id) reads of a job or workflow (what), or NULL
 *		when the page has become the error page: 404 if the role cannot see
 *		it (RLS), as chancy's functions say.
 */
static PGresult *
row_by_id(Request *r, const char *what, const char *id, const char *sql)
{
	PGresult   *res = query(r, sql, 1, &id);

	if (res != NULL && PQntuples(res) == 0)
	{
		PQclear(res);
		error_page(r, MHD_HTTP_NOT_FOUND,
				   "%c%s %s does not exist, or was pushed by a role whose %ss you cannot see.",
				   toupper((unsigned char) what[0]), what + 1, id, what);
		return NULL;
	}
	return res;
}

/* GET /jobs/ID: a job, its errors as a timeline, what it cost, its actions. */
static void
job_page(Request *r, const char *id, const void *data)
{
	PGresult   *job,
			   *errors;
	const char *state;
	char		title[64];
	int			cost;

	job = row_by_id(r, "job", id,
				"SELECT id, name, queue, state, function, priority, attempts, max_attempts,"
				" pushed_by::text AS pushed_by, created_at, scheduled_at, started_at, completed_at,"
				" unique_key, time_limit, memory_limit, limit_keys, workflow_id, step,"
				" jsonb_pretty(kwargs) AS kwargs, jsonb_pretty(meta) AS meta,"
				" jsonb_pretty(result) AS result, crashes,"
				" run_us, cpu_user_us, cpu_sys_us, mem_peak_bytes, wal_bytes, blks_hit, blks_read"
				" FROM chancy_jobs WHERE id = $1::int8");
	if (job == NULL)
		return;
	errors = query(r,
				   "SELECT e->>'attempt' AS attempt, e->>'at' AS at, e->>'sqlstate' AS sqlstate,"
				   " e->>'message' AS message, e->>'detail' AS detail, e->>'hint' AS hint,"
				   " e->>'context' AS context"
				   " FROM chancy_jobs j, jsonb_array_elements(j.errors) WITH ORDINALITY AS x(e, n)"
				   " WHERE j.id = $1::int8 ORDER BY n", 1, &id);
	if (errors == NULL)
	{
		PQclear(job);
		return;
	}
	snprintf(title, sizeof(title), "Job %s", id);
	page_begin(r, title);
	state = PQgetvalue(job, 0, PQfnumber(job, "state"));
	buf_puts(&r->body, "<p id=\"actions\">");
	if (strcmp(state, "pending") == 0 || strcmp(state, "retrying") == 0 ||
		strcmp(state, "running") == 0)
		button(r, "/jobs/", id, "/cancel", "Cancel");
	else if (strcmp(state, "succeeded") != 0 && PQgetisnull(job, 0, PQfnumber(job, "workflow_id")))
		button(r, "/jobs/", id, "/retry", "Retry");
	if (!PQgetisnull(job, 0, PQfnumber(job, "workflow_id")))
	{
		buf_puts(&r->body, "<a href=\"/workflows/");
		buf_url(&r->body, PQgetvalue(job, 0, PQfnumber(job, "workflow_id")));
		buf_puts(&r->body, "\">Its workflow</a>");
	}
	buf_puts(&r->body, "</p>");
	cost = PQfnumber(job, "run_us");
	record_table(r, job, 0, cost - 1);
	buf_puts(&r->body, "<h2>What its runs cost</h2>");
	record_table(r, job, cost, PQnfields(job) - 1);
	buf_puts(&r->body, "<h2>Errors, oldest first</h2><div id=\"errors\">");
	result_table(r, errors, NULL, NULL);
	buf_puts(&r->body, "</div>");
	PQclear(job);
	PQclear(errors);
	page_end(r);
}

/* An action on a job or workflow: its function, and what is said after. */
typedef struct IdAction
{
	const char *page;			/* shown next, the id appended */
	const char *sql;			/* $1 is the id; returns the state */
	const char *said;			/* %s: the id, then the state */
} IdAction;

static const IdAction cancel_job = {"/jobs/", "SELECT state FROM chancy_cancel($1::int8)",
"Job %s: cancel sent; its state: %s."};
static const IdAction retry_job = {"/jobs/", "SELECT state FROM chancy_retry($1::int8)",
"Job %s: %s again."};
static const IdAction cancel_workflow = {"/workflows/",
	"SELECT state FROM chancy_cancel_workflow($1::int8)", "Workflow %s: %s."};
static const IdAction retry_workflow = {"/workflows/",
	"SELECT state FROM chancy_retry_workflow($1::int8)", "Workflow %s: %s."};

/* POST /jobs/ID/cancel, /jobs/ID/retry, /workflows/ID/cancel, .../retry */
static void
id_action(Request *r, const char *id, const void *data)
{
	const IdAction *a = data;
	char		page[64];

	snprintf(page, sizeof(page), "%s%s", a->page, id);
	action(r, page, a->sql, 1, &id, a->said, id);
}

/* POST /jobs/retry: the failed jobs a filter finds run again. */
static void
jobs_retry(Request *r, const char *id, const void *data)
{
	const char *p[4] = {field(r, "queue"), field(r, "name"), field(r, "failed_after"),
	field(r, "failed_before")};

	action(r, "/jobs?state=failed",
		   "SELECT chancy_retry_jobs(queue => $1, name => $2,"
		   " failed_after => $3::timestamptz, failed_before => $4::timestamptz)",
		   4, p, "%sRetried %s failed jobs.", "");
}

/* GET /queues: each queue, with pause, resume and its concurrency. */
static void
queues_page(Request *r, const char *id, const void *data)
{
	PGresult   *res;

	res = query(r,
				"SELECT s.queue, s.concurrency, s.executors, s.paused_until, s.pending, s.running,"
				" s.failed, q.time_limit, q.executor, q.prune_after"
				" FROM chancy_queue_stats s LEFT JOIN chancy_queues q ON q.name = s.queue"
				" ORDER BY s.queue", 0, NULL);
	if (res == NULL)
		return;
	page_begin(r, "Queues");
	buf_puts(&r->body, "<table id=\"queues\"><tr>");
	for (int c = 0; c < PQnfields(res); c++)
		buf_printf(&r->body, "<th>%s</th>", PQfname(res, c));
	buf_puts(&r->body, "<th>actions</th></tr>");
	for (int row = 0; row < PQntuples(res); row++)
	{
		const char *queue = PQgetvalue(res, row, 0);

		buf_puts(&r->body, "<tr>");
		for (int c = 0; c < PQnfields(res); c++)
		{
			buf_printf(&r->body, "<td data-col=\"%s\">", PQfname(res, c));
			buf_html(&r->body, PQgetvalue(res, row, c));
			buf_puts(&r->body, "</td>");
		}
		buf_puts(&r->body, "<td>");
		if (PQgetisnull(res, row, 3))
			queue_form(r, "/queues/pause", queue, NULL, "Pause");
		else
			queue_form(r, "/queues/resume", queue, NULL, "Resume");
		queue_form(r, "/queues/concurrency", queue, PQgetvalue(res, row, 1), "Set concurrency");
		buf_puts(&r->body, "</td></tr>");
	}
	buf_puts(&r->body, "</table>");
	PQclear(res);
	page_end(r);
}

/* The queue field of a queue action, or a 400 page. */
static const char *
queue_field(Request *r)
{
	const char *queue = field(r, "queue");

	if (queue == NULL)
		error_page(r, MHD_HTTP_BAD_REQUEST, "The form names no queue.");
	return queue;
}

/* POST /queues/pause: until resumed (or until resume_at, if given). */
static void
queue_pause(Request *r, const char *id, const void *data)
{
	const char *p[2] = {queue_field(r), field(r, "resume_at")};

	if (p[0])
		action(r, "/queues", "SELECT name FROM chancy_pause_queue($1, $2::timestamptz)",
			   2, p, "%sQueue %s paused.", "");
}

/* POST /queues/resume */
static void
queue_resume(Request *r, const char *id, const void *data)
{
	const char *queue = queue_field(r);

	if (queue)
		action(r, "/queues", "SELECT name FROM chancy_resume_queue($1)",
			   1, &queue, "%sQueue %s resumed.", "");
}

/* POST /queues/concurrency: of a queue that exists (declaring makes one). */
static void
queue_concurrency(Request *r, const char *id, const void *data)
{
	const char *p[2] = {queue_field(r), field(r, "concurrency")};
	PGresult   *res;
	bool		exists;

	if (p[0] == NULL)
		return;
	if (p[1] == NULL)
	{
		error_page(r, MHD_HTTP_BAD_REQUEST, "The form gives no concurrency.");
		return;
	}
	if ((res = query(r, "SELECT FROM chancy_queues WHERE name = $1", 1, p)) == NULL)
		return;
	exists = PQntuples(res) == 1;
	PQclear(res);
	if (!exists)
		error_page(r, MHD_HTTP_NOT_FOUND, "There is no queue \"%s\".", p[0]);
	else
		action(r, "/queues", "SELECT name FROM chancy_declare_queue($1, concurrency => $2::int)",
			   2, p, "%sQueue %s changed.", "");
}

/* A page that is one table; for the roles that may read it. */
typedef struct Listing
{
	const char *title;
	const char *sql;
	const char *link_column;	/* links to link_prefix and its value */
	const char *link_prefix;
	const char *relation;		/* SELECT on it is needed; NULL: nothing */
} Listing;

static const Listing schedules = {"Schedules",
	"SELECT name, cron, time_zone, enabled, next_fire_at, last_fire_at, last_job_id,"
	" last_job_state AS state, fires, skips, owner::text AS owner"
	" FROM chancy_schedule_status ORDER BY next_fire_at NULLS LAST, name",
"last_job_id", "/jobs/"};
static const Listing workers = {"Workers",
	"SELECT kind, database, queue, pid, state, job_id, jobs_done, started_at, looked_at"
	" FROM chancy_workers ORDER BY kind, database, queue, pid",
"job_id", "/jobs/"};
static const Listing limits = {"Limits",
	"SELECT key, concurrency, running, parked, rate, per, burst, tokens,"
	" next_token_at, suspended_until, throttled, oldest_parked_age"
	" FROM chancy_limit_stats ORDER BY key",
NULL, NULL, "chancy_limit_stats"};
static const Listing workflows = {"Workflows",
	"SELECT id, name, state, steps_total, steps_done, steps_failed, steps_waiting,"
	" pushed_by::text AS pushed_by, created_at, completed_at"
	" FROM chancy_workflows ORDER BY id DESC LIMIT 100",
"id", "/workflows/"};

/* GET /schedules, /workers, /limits, /workflows */
static void
listing(Request *r, const char *id, const void *data)
{
	const Listing *l = data;
	PGresult   *res;
	bool		allowed = true;

	if (l->relation)
	{
		if ((res = query(r, "SELECT has_table_privilege($1, 'SELECT')", 1, &l->relation)) == NULL)
			return;
		allowed = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
	}
	page_begin(r, l->title);
	if (!allowed)
	{
		buf_puts(&r->body, "<p id=\"not-allowed\">Your role may not read ");
		buf_html(&r->body, l->relation);
		buf_puts(&r->body, " (the extension's owner grants it).</p>");
	}
	else if (!section(r, NULL, l->sql, l->link_column, l->link_prefix))
		return;
	page_end(r);
}

/* GET /workflows/ID: its steps, and cancel or retry. */
static void
workflow_page(Request *r, const char *id, const void *data)
{
	PGresult   *wf,
			   *steps;
	char		title[64];

	wf = row_by_id(r, "workflow", id,
				   "SELECT id, name, state, steps_total, steps_done, steps_failed, steps_waiting,"
				   " pushed_by::text AS pushed_by, cancelled_by::text AS cancelled_by,"
				   " created_at, completed_at FROM chancy_workflows WHERE id = $1::int8");
	if (wf == NULL)
		return;
	steps = query(r, "SELECT step, job_id, name, queue, state, depends_on, attempts,"
				  " started_at, completed_at FROM chancy_workflow_steps"
				  " WHERE workflow_id = $1::int8 ORDER BY step", 1, &id);
	if (steps == NULL)
	{
		PQclear(wf);
		return;
	}
	snprintf(title, sizeof(title), "Workflow %s", id);
	page_begin(r, title);
	buf_puts(&r->body, "<p id=\"actions\">");
	if (strcmp(PQgetvalue(wf, 0, 2), "running") == 0)
		button(r, "/workflows/", id, "/cancel", "Cancel");
	else if (strcmp(PQgetvalue(wf, 0, 2), "succeeded") != 0)
		button(r, "/workflows/", id, "/retry", "Retry failed steps");
	buf_puts(&r->body, "</p>");
	record_table(r, wf, 0, PQnfields(wf) - 1);
	buf_puts(&r->body, "<h2>Steps</h2>");
	result_table(r, steps, "job_id", "/jobs/");
	PQclear(wf);
	PQclear(steps);
	page_end(r);
}

/* GET /login, or the login form again after a failure (401). */
static void
login_page(Request *r, const char *why)
{
	page_begin(r, "Log in");
	if (why)
	{
		r->status = MHD_HTTP_UNAUTHORIZED;
		buf_puts(&r->body, "<p class=\"flash error\" id=\"error\">");
		buf_html(&r->body, why);
		buf_puts(&r->body, "</p>");
	}
	buf_puts(&r->body, "<form method=\"post\" action=\"/login\" id=\"login\">"
			 "<p>Log in as a PostgreSQL role: you see and may do what it may.</p>"
			 "<p><label>Role <input name=\"user\" autocomplete=\"username\" required></label></p>"
			 "<p><label>Password <input name=\"password\" type=\"password\""
			 " autocomplete=\"current-password\" required></label></p>"
			 "<p><button>Log in</button></p></form>");
	page_end(r);
}

/* POST /login: a session as the role, if the server takes its password. */
static void
login(Request *r)
{
	const char *user = field(r, "user");
	const char *password = field(r, "password");
	Session    *s;

	if (user == NULL || password == NULL)
	{
		login_page(r, "Give a role and its password.");
		r->status = MHD_HTTP_BAD_REQUEST;
		return;
	}
	if (r->session)
		session_logout(r->session);
	r->session = NULL;
	s = session_login(r, user, password);
	if (s == NULL)
	{
		login_page(r, r->error);
		return;
	}
	snprintf(r->cookie, sizeof(r->cookie), "chancy_session=%s; Path=/; HttpOnly; SameSite=Strict%s",
			 s->id, web_tls ? "; Secure" : "");
	redirect(r, "/");
}

/* POST /logout */
static void
logout(Request *r, const char *id, const void *data)
{
	session_logout(r->session);
	r->session = NULL;
	snprintf(r->cookie, sizeof(r->cookie), "chancy_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
	redirect(r, "/login");
}

/*
 * What a machine endpoint answered last, kept a few seconds: the pages
 * share the one thread, and a scraper or a load balancer polling hard must
 * not take it (chancy_health() reads the queues' oldest jobs).
 */
typedef struct Answer
{
	struct timespec at;
	int			status;
	Buf			body;
} Answer;

#define ANSWER_KEPT_MS 2000

/* Whether a is recent; then it is r's answer. */
static bool
answered(Request *r, Answer *a)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (a->body.data == NULL ||
		(now.tv_sec - a->at.tv_sec) * 1000 + (now.tv_nsec - a->at.tv_nsec) / 1000000 >= ANSWER_KEPT_MS)
		return false;
	r->status = a->status;
	buf_add(&r->body, a->body.data, a->body.len);
	return true;
}

/* Keep r's answer in a. */
static void
keep(Request *r, Answer *a)
{
	clock_gettime(CLOCK_MONOTONIC, &a->at);
	a->status = r->status;
	a->body.len = 0;
	buf_add(&a->body, r->body.data ? r->body.data : "", r->body.len);
}

/* GET /metrics: Prometheus' text format, as the conninfo's role. */
static void
metrics(Request *r)
{
	static Answer last;
	PGresult   *res;

	r->content_type = "text/plain; version=0.0.4; charset=utf-8";
	if (answered(r, &last))
		return;
	res = machine_query(r, "SELECT chancy_metrics_prometheus()");
	if (res == NULL)
	{
		r->status = MHD_HTTP_SERVICE_UNAVAILABLE;
		buf_printf(&r->body, "# chancy-web: %s\n", r->error);
		return;
	}
	buf_puts(&r->body, PQgetvalue(res, 0, 0));
	PQclear(res);
	keep(r, &last);
}

/*
 * health
 *		GET /health: chancy_health()'s checks as JSON; 200 while none
 *		fails, 503 if one does or the database cannot be reached (then the
 *		check "database" says why, in JSON the server quotes).
 */
static void
health(Request *r)
{
	static Answer last;
	PGresult   *res;

	r->content_type = "application/json";
	if (answered(r, &last))
		return;
	res = machine_query(r, "SELECT coalesce(bool_or(status = 'fail'), false),"
						" json_agg(h ORDER BY \"check\") FROM chancy_health() h");
	if (res == NULL)
	{
		char	   *c;

		r->status = MHD_HTTP_SERVICE_UNAVAILABLE;
		buf_puts(&r->body, "[{\"check\": \"database\", \"status\": \"fail\", \"message\": \"");
		for (c = r->error; *c; c++)
		{
			if (*c == '"' || *c == '\\')
				buf_printf(&r->body, "\\%c", *c);
			else if ((unsigned char) *c < 0x20)
				buf_printf(&r->body, "\\u%04x", (unsigned char) *c);
			else
				buf_add(&r->body, c, 1);
		}
		buf_puts(&r->body, "\"}]\n");
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		r->status = MHD_HTTP_SERVICE_UNAVAILABLE;
	buf_puts(&r->body, PQgetvalue(res, 0, 1));
	buf_puts(&r->body, "\n");
	PQclear(res);
	keep(r, &last);
}

/*
 * The pages that need a session: # is a job or workflow id; a GET page
 * takes the arguments args names (NULL: none), and its handler data.
 */
static const struct
{
	bool		post;
	const char *path;
	Handler		fn;
	const void *data;
	const char *const *args;
}			routes[] =
{
	{false, "/", overview},
	{false, "/jobs", jobs_page, NULL, job_filter},
	{false, "/jobs/#", job_page},
	{true, "/jobs/#/cancel", id_action, &cancel_job},
	{true, "/jobs/#/retry", id_action, &retry_job},
	{true, "/jobs/retry", jobs_retry},
	{false, "/queues", queues_page},
	{true, "/queues/pause", queue_pause},
	{true, "/queues/resume", queue_resume},
	{true, "/queues/concurrency", queue_concurrency},
	{false, "/schedules", listing, &schedules},
	{false, "/workers", listing, &workers},
	{false, "/limits", listing, &limits},
	{false, "/workflows", listing, &workflows},
	{false, "/workflows/#", workflow_page},
	{true, "/workflows/#/cancel", id_action, &cancel_workflow},
	{true, "/workflows/#/retry", id_action, &retry_workflow},
	{true, "/logout", logout},
};

/*
 * matches
 *		Whether path is pattern, where # stands for an id (1 to 18 digits,
 *		copied into id).
 */
static bool
matches(const char *path, const char *pattern, char *id)
{
	for (; *pattern; pattern++)
	{
		if (*pattern == '#')
		{
			size_t		n = strspn(path, "0123456789");

			if (n == 0 || n > 18)
				return false;
			memcpy(id, path, n);
			id[n] = '\0';
			path += n;
		}
		else if (*path++ != *pattern)
			return false;
	}
	return *path == '\0';
}

/*
 * same_origin
 *		Whether a POST came from a page of ours: the browser's Origin header,
 *		when it sends one, names the host the request was sent to (with
 *		SameSite cookies and the CSRF token, a forged form is refused
 *		thrice).  Either scheme: behind a proxy that ends TLS, the browser
 *		says https and we serve http.
 */
static bool
same_origin(Request *r)
{
	const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
	const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");

	if (origin == NULL)
		return true;
	if (strncmp(origin, "https://", 8) == 0)
		origin += 8;
	else if (strncmp(origin, "http://", 7) == 0)
		origin += 7;
	else
		return false;
	return host && strcmp(origin, host) == 0;
}

/*
 * route
 *		Answer the request: the public pages, then, for a logged-in role,
 *		the page or the action its path names.
 */
void
route(Request *r)
{
	char		id[20] = "";
	bool		path_known = false;

	if (r->post && !same_origin(r))
	{
		error_page(r, MHD_HTTP_FORBIDDEN, "This form was sent from another site.");
		return;
	}
	if (strcmp(r->path, "/style.css") == 0 && !r->post)
	{
		r->content_type = "text/css";
		buf_puts(&r->body, web_css);
		return;
	}
	if (strcmp(r->path, "/metrics") == 0 && !r->post)
	{
		metrics(r);
		return;
	}
	if (strcmp(r->path, "/health") == 0 && !r->post)
	{
		health(r);
		return;
	}
	if (strcmp(r->path, "/login") == 0)
	{
		if (r->post)
			login(r);
		else
			login_page(r, NULL);
		return;
	}
	if (strcmp(r->method, MHD_HTTP_METHOD_GET) != 0 &&
		strcmp(r->method, MHD_HTTP_METHOD_HEAD) != 0 && !r->post)
	{
		error_page(r, MHD_HTTP_METHOD_NOT_ALLOWED, "chancy-web answers GET, HEAD and POST only.");
		return;
	}
	if (r->session == NULL)
	{
		if (r->post)
			error_page(r, MHD_HTTP_FORBIDDEN, "Log in first: your session has ended, or never began.");
		else
			redirect(r, "/login");
		return;
	}
	if (r->post && !session_csrf_ok(r->session, field(r, "csrf")))
	{
		error_page(r, MHD_HTTP_FORBIDDEN, "The form's CSRF token is missing or wrong: load the page again and retry.");
		return;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (matches(r->path, routes[i].path, id))
		{
			static const char *const none[] = {NULL};

			if (routes[i].post == r->post)
			{
				if (known_args(r, routes[i].args ? routes[i].args : none))
					routes[i].fn(r, id, routes[i].data);
				return;
			}
			path_known = true;
		}
	if (path_known)
		error_page(r, MHD_HTTP_METHOD_NOT_ALLOWED, "%s takes %s.", r->path, r->post ? "GET" : "POST");
	else
		error_page(r, MHD_HTTP_NOT_FOUND, "There is no page %s.", r->path);
}
