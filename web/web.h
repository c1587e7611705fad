/*-------------------------------------------------------------------------
 *
 * web.h
 *	  chancy-web: the dashboard, a program of its own outside the server.
 *
 * main.c runs the HTTP server (libmicrohttpd) and routes requests;
 * session.c logs roles in (each session is a libpq connection as its role)
 * and runs every query; pages.c renders the pages and runs the actions;
 * html.c builds text: escaping, the page's frame, SVG charts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHANCY_WEB_H
#define CHANCY_WEB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <libpq-fe.h>

#define TOKEN_LEN	64			/* hex digits of a session id or CSRF token */
#define MAX_FIELDS	16			/* fields a form may send */
#define MAX_FIELD	4096		/* bytes a field may hold */

/* A growing string; out of memory ends the program (see xrealloc). */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

/* A logged-in role: its own connection, and the token its forms carry. */
typedef struct Session
{
	char		id[TOKEN_LEN + 1];
	char		csrf[TOKEN_LEN + 1];
	char		role[64];
	PGconn	   *conn;
	time_t		last_used;
	uint64_t	use;			/* when last used, in uses of any session */
	char		flash[512];		/* said once, on the next page */
	bool		flash_error;
} Session;

/* A form field of a POST. */
typedef struct Field
{
	char		name[32];
	Buf			value;
} Field;

/* One request, and what is answered. */
typedef struct Request
{
	struct MHD_Connection *conn;
	const char *method;
	const char *path;
	bool		post;
	Session    *session;
	Field		fields[MAX_FIELDS];
	int			nfields;
	struct MHD_PostProcessor *pp;	/* reads the form, once a body comes */
	size_t		received;		/* bytes of body */
	bool		too_large;		/* more than MAX_BODY: 413 */

	int			status;
	const char *content_type;
	Buf			body;
	char		location[512];	/* a redirect (303) to here */
	char		cookie[256];	/* Set-Cookie */
	char		error[1024];	/* what went wrong, for the error page */
} Request;

/* main.c */
extern bool web_tls;
extern const char *web_conninfo;
extern int	web_session_minutes;
extern const char *arg(Request *r, const char *name);
extern const char *field(Request *r, const char *name);

/* session.c */
extern void random_token(char *out);
extern Session *session_find(const char *id);
extern bool session_csrf_ok(Session *s, const char *token);
extern Session *session_login(Request *r, const char *user, const char *password);
extern void session_logout(Session *s);
extern void session_expire(void);
extern void session_flash(Session *s, bool error, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
extern PGresult *query(Request *r, const char *sql, int nparams, const char *const *params);
extern PGresult *machine_query(Request *r, const char *sql);

/* pages.c */
extern void route(Request *r);

/* html.c */
extern void *xrealloc(void *p, size_t size);
extern void buf_add(Buf *b, const char *s, size_t n);
extern void buf_puts(Buf *b, const char *s);
extern void buf_printf(Buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
extern void buf_html(Buf *b, const char *s);
extern void buf_url(Buf *b, const char *s);
extern void buf_free(Buf *b);
extern void page_begin(Request *r, const char *title);
extern void page_end(Request *r);
extern void error_page(Request *r, int status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
extern void result_table(Request *r, PGresult *res, const char *link_column,
						 const char *link_prefix);

/* one series of a chart: a value a minute, NAN where nothing was recorded */
#define CHART_POINTS 60
typedef struct Series
{
	const char *label;
	double		v[CHART_POINTS];
} Series;
extern void svg_chart(Buf *b, const char *id, const char *title, const char *unit,
					  const Series *series, int nseries);
extern const char web_css[];

#endif							/* CHANCY_WEB_H */
