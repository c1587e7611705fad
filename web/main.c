/*-------------------------------------------------------------------------
 *
 * main.c
 *	  chancy-web: chancy's dashboard, a program outside the server.
 *
 *	  chancy-web [--listen HOST:PORT] [--host NAME]... [--cert FILE --key FILE]
 *				 [--session-minutes N] [CONNINFO]
 *
 *	  It serves HTTP (HTTPS with --cert and --key) with libmicrohttpd, on
 *	  127.0.0.1:8787 unless told otherwise, in one thread that runs every
 *	  request in turn, and, between them, ends idle sessions: a request's
 *	  queries are short (and their connections time out, see session.c),
 *	  and one thread needs no locks around the sessions.  This file reads the options, starts the
 *	  server, collects each request (its form fields through libmicrohttpd's
 *	  POST processor) and sends the answer with the headers every answer
 *	  carries.  pages.c decides what the answer is.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "web.h"

#define MAX_BODY	(64 * 1024)

bool		web_tls = false;
const char *web_conninfo = "";
int			web_session_minutes = 60;

/* the names a request may say it is for (Host): see host_ok() */
#define MAX_HOSTS 16
static const char *hosts[MAX_HOSTS];
static int	nhosts;
static const char *listen_port;

static volatile sig_atomic_t stop_requested = false;

static void
request_stop(int sig)
{
	stop_requested = true;
}

/*
 * host_ok
 *		Whether host (a request's Host header) names this server: the listen
 *		address, localhost when that is a loopback address, or a --host name,
 *		each with the port or (behind a proxy, for --host) without.  Else a
 *		page on another name, resolved to this address (DNS rebinding), could
 *		send requests here and read the answers.
 */
static bool
host_ok(const char *host)
{
	size_t		len;

	if (host == NULL)
		return false;
	for (int i = 0; i < nhosts; i++)
	{
		len = strlen(hosts[i]);
		if (strncmp(host, hosts[i], len) == 0 &&
			(host[len] == '\0' ||
			 (host[len] == ':' && strcmp(host + len + 1, listen_port) == 0)))
			return true;
	}
	return false;
}

/* A GET argument of the request, or NULL (an empty one counts as absent). */
const char *
arg(Request *r, const char *name)
{
	const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);

	return v && *v ? v : NULL;
}

/* A field of the request's form, or NULL (an empty one counts as absent). */
const char *
field(Request *r, const char *name)
{
	for (int i = 0; i < r->nfields; i++)
		if (strcmp(r->fields[i].name, name) == 0)
			return r->fields[i].value.len ? r->fields[i].value.data : NULL;
	return NULL;
}

/*
 * post_field
 *		libmicrohttpd's POST processor hands over a field, maybe in pieces
 *		(each at offset off of the value; the first may be empty).  A field given twice, too many fields, a field too long
 *		or holding a NUL byte mark the request bad or too large.
 */
static enum MHD_Result
post_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
		   const char *content_type, const char *encoding, const char *data,
		   uint64_t off, size_t size)
{
	Request    *r = cls;
	Field	   *f = NULL;

	for (int i = 0; i < r->nfields; i++)
		if (strcmp(r->fields[i].name, key) == 0)
			f = &r->fields[i];
	/* a field may come in pieces, the first maybe empty: off says where */
	if (f != NULL && off != f->value.len)
	{
		snprintf(r->error, sizeof(r->error), "the form field \"%.31s\" is given twice", key);
		return MHD_NO;
	}
	if (f == NULL)
	{
		if (r->nfields == MAX_FIELDS || strlen(key) >= sizeof(f->name))
		{
			snprintf(r->error, sizeof(r->error), "the form has too many fields, or too long a name");
			return MHD_NO;
		}
		f = &r->fields[r->nfields++];
		strcpy(f->name, key);
	}
	if (f->value.len + size > MAX_FIELD || memchr(data, '\0', size) != NULL)
	{
		snprintf(r->error, sizeof(r->error), "the form field \"%s\" is too long or holds a NUL byte", key);
		return MHD_NO;
	}
	buf_add(&f->value, data, size);
	return MHD_YES;
}

/* Free a request once libmicrohttpd is done with it. */
static void
request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	Request    *r = *con_cls;

	if (r == NULL)
		return;
	if (r->pp)
		MHD_destroy_post_processor(r->pp);
	for (int i = 0; i < r->nfields; i++)
		buf_free(&r->fields[i].value);
	buf_free(&r->body);
	free(r);
	*con_cls = NULL;
}

/*
 * respond
 *		Send r's answer, with the headers of every answer: no caching, no
 *		framing, no sniffing, a policy that lets the page load
 *		nothing but its own style sheet and send forms only here; a referrer
 *		only to this site.
 */
static enum MHD_Result
respond(Request *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(r->body.len, r->body.data ? r->body.data : "",
										   MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(resp, "Content-Type",
							r->content_type ? r->content_type : "text/plain; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	/* not no-referrer: with it, a browser's forms say Origin: null */
	MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
	MHD_add_response_header(resp, "Content-Security-Policy",
							"default-src 'none'; style-src 'self'; img-src 'self';"
							" form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
	if (web_tls)
		MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
	if (r->location[0])
		MHD_add_response_header(resp, "Location", r->location);
	if (r->cookie[0])
		MHD_add_response_header(resp, "Set-Cookie", r->cookie);
	ret = MHD_queue_response(r->conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/*
 * handle
 *		libmicrohttpd's request handler: called first with the headers, then
 *		with each piece of a POST's body, and last with none left, when the
 *		answer is made (route()) and sent.
 */
static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size,
	   void **con_cls)
{
	Request    *r = *con_cls;

	if (r == NULL)
	{
		r = calloc(1, sizeof(Request));
		if (r == NULL)
			return MHD_NO;
		r->conn = conn;
		r->method = method;
		r->path = url;
		r->post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
		r->status = MHD_HTTP_OK;
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		/* the POST processor is made at the first piece of body */
		r->received += *upload_data_size;
		if (r->received > MAX_BODY)
			r->too_large = true;
		else if (r->post && !r->error[0])
		{
			if (r->pp == NULL)
				r->pp = MHD_create_post_processor(conn, 8192, post_field, r);
			if (r->pp == NULL)
				snprintf(r->error, sizeof(r->error),
						 "a form must be sent as application/x-www-form-urlencoded or multipart/form-data");
			else if (MHD_post_process(r->pp, upload_data, *upload_data_size) != MHD_YES &&
					 !r->error[0])
				snprintf(r->error, sizeof(r->error), "the form could not be read");
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	/* the processor hands over the last field as it is destroyed */
	if (r->pp)
		MHD_destroy_post_processor(r->pp);
	r->pp = NULL;

	session_expire();
	r->session = session_find(MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, "chancy_session"));
	if (!host_ok(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host")))
		error_page(r, MHD_HTTP_MISDIRECTED_REQUEST,
				   "This server does not answer for that host name (chancy-web --host NAME adds one).");
	else if (r->too_large)
		error_page(r, MHD_HTTP_CONTENT_TOO_LARGE, "The request's body is larger than %d bytes.", MAX_BODY);
	else if (r->error[0])
		error_page(r, MHD_HTTP_BAD_REQUEST, "%s.", r->error);
	else
		route(r);
	return respond(r);
}

/* Read file into a NUL-terminated string, or exit. */
static char *
read_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	Buf			b = {0};
	char		chunk[4096];
	size_t		n;

	if (f == NULL)
	{
		fprintf(stderr, "chancy-web: could not open \"%s\": %s\n", path, strerror(errno));
		exit(2);
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&b, chunk, n);
	fclose(f);
	buf_add(&b, "", 0);
	return b.data;
}

static void
usage(void)
{
	fprintf(stderr,
			"Usage: chancy-web [OPTION]... [CONNINFO]\n"
			"Serve chancy's dashboard for the database CONNINFO names (libpq's\n"
			"connection string, \"dbname=app host=/var/run/postgresql\"; default: libpq's\n"
			"defaults).  Users log in as PostgreSQL roles with their passwords; /metrics\n"
			"and /health connect as CONNINFO's own user.\n\n"
			"  --listen HOST:PORT     address to serve (default 127.0.0.1:8787)\n"
			"  --host NAME            also answer requests for this host name (a proxy's);\n"
			"                         may be given more than once\n"
			"  --cert FILE --key FILE serve HTTPS with this PEM certificate and key\n"
			"  --session-minutes N    end a session idle this long (default 60)\n");
}

int
main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:8787";
	const char *cert = NULL,
			   *key = NULL;
	char		host[256];
	char	   *port,
			   *end;
	struct addrinfo hints = {0},
			   *addr;
	unsigned int flags = MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	struct MHD_Daemon *daemon;
	struct sigaction sa = {0};
	long		portnum;
	int			err;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
			listen = argv[++i];
		else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
			cert = argv[++i];
		else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			key = argv[++i];
		else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc && nhosts < MAX_HOSTS - 2)
			hosts[nhosts++] = argv[++i];
		else if (strcmp(argv[i], "--session-minutes") == 0 && i + 1 < argc)
		{
			web_session_minutes = atoi(argv[++i]);
			if (web_session_minutes < 1 || web_session_minutes > 7 * 24 * 60)
			{
				fprintf(stderr, "chancy-web: --session-minutes must be between 1 and 10080\n");
				return 2;
			}
		}
		else if (strcmp(argv[i], "--help") == 0)
		{
			usage();
			return 0;
		}
		else if (argv[i][0] != '-' && i == argc - 1)
			web_conninfo = argv[i];
		else
		{
			usage();
			return 2;
		}
	}
	if ((cert == NULL) != (key == NULL))
	{
		fprintf(stderr, "chancy-web: --cert and --key go together\n");
		return 2;
	}

	/* HOST:PORT, or [HOST]:PORT for an IPv6 address */
	snprintf(host, sizeof(host), "%s", listen[0] == '[' ? listen + 1 : listen);
	port = strrchr(host, ':');
	if (port && listen[0] == '[' && port > host && port[-1] == ']')
		port[-1] = '\0';		/* [::1]:8787 */
	if (port == NULL || port == host)
	{
		fprintf(stderr, "chancy-web: --listen takes HOST:PORT, not \"%s\"\n", listen);
		return 2;
	}
	*port++ = '\0';
	portnum = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || portnum < 1 || portnum > 65535)
	{
		fprintf(stderr, "chancy-web: --listen takes a port from 1 to 65535, not \"%s\"\n", port);
		return 2;
	}
	listen_port = port;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((err = getaddrinfo(host, port, &hints, &addr)) != 0)
	{
		fprintf(stderr, "chancy-web: cannot listen on \"%s\": %s\n", listen, gai_strerror(err));
		return 2;
	}
	/* the address as a Host header says it; localhost for loopback */
	hosts[nhosts++] = listen[0] == '[' ? strndup(listen, strlen(listen) - strlen(port) - 1) : host;
	if (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0)
		hosts[nhosts++] = "localhost";
	if (addr->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cert)
	{
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
		{
			fprintf(stderr, "chancy-web: this libmicrohttpd has no TLS\n");
			return 2;
		}
		flags |= MHD_USE_TLS;
		web_tls = true;
	}

	/* stopped by SIGINT or SIGTERM (no SA_RESTART: the wait returns); no SIGPIPE */
	signal(SIGPIPE, SIG_IGN);
	sa.sa_handler = request_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL,
							  MHD_OPTION_SOCK_ADDR, addr->ai_addr,
							  MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
							  MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 256,
							  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) 64,
							  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 15,
							  /* without --cert the list ends here */
							  cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END,
							  cert ? read_file(cert) : NULL,
							  MHD_OPTION_HTTPS_MEM_KEY, key ? read_file(key) : NULL,
							  MHD_OPTION_END);
	freeaddrinfo(addr);
	if (daemon == NULL)
	{
		fprintf(stderr, "chancy-web: could not listen on %s\n", listen);
		return 1;
	}
	fprintf(stderr, "chancy-web: serving %s://%s/\n", cert ? "https" : "http", listen);

	while (!stop_requested)
	{
		MHD_run_wait(daemon, 1000);
		session_expire();
	}
	fprintf(stderr, "chancy-web: stopping\n");
	MHD_stop_daemon(daemon);
	return 0;
}
