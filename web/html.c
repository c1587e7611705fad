/*-------------------------------------------------------------------------
 *
 * html.c
 *	  chancy-web's text: growing buffers, HTML and URL escaping, the frame
 *	  of every page, tables of query results, and SVG charts drawn here so
 *	  that the page needs no script and no network.
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web.h"

/* The style sheet, served as /style.css. */
const char	web_css[] =
"body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}"
"header{background:#1d2733;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}"
"header a{color:#cfe3ff;text-decoration:none}header .brand{font-weight:600;color:#fff}"
"header form{margin-left:auto}main{padding:16px;max-width:1200px}"
"table{border-collapse:collapse;background:#fff;margin:8px 0}"
"td,th{border:1px solid #d5dbe1;padding:3px 8px;text-align:left;vertical-align:top}"
"th{background:#e9edf1}td.num{text-align:right}pre{margin:0;white-space:pre-wrap;max-width:700px}"
".tiles{display:flex;flex-wrap:wrap;gap:8px}"
".tile{background:#fff;border:1px solid #d5dbe1;border-left:6px solid #2e8540;padding:6px 10px;min-width:150px}"
".tile.warn{border-left-color:#e6a700}.tile.fail{border-left-color:#c62828}"
".tile b{display:block}.flash{padding:8px;background:#e3f2e6;border:1px solid #2e8540}"
".flash.error{background:#fdecea;border-color:#c62828}"
".charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #d5dbe1}"
".state-failed,.state-fail{color:#c62828}.state-succeeded,.state-ok{color:#2e8540}"
".state-running{color:#1565c0}.state-warn{color:#b07d00}"
"form.inline{display:inline}input,select,button{font:inherit}"
"fieldset{border:1px solid #d5dbe1;background:#fff}";

/* Grow p to size bytes; a dashboard that runs out of memory stops. */
void *
xrealloc(void *p, size_t size)
{
	p = realloc(p, size);
	if (p == NULL)
	{
		fprintf(stderr, "chancy-web: out of memory\n");
		exit(1);
	}
	return p;
}

/* Make room for n more bytes and the NUL after them. */
static void
buf_reserve(Buf *b, size_t n)
{
	if (b->len + n + 1 <= b->cap)
		return;
	b->cap = (b->len + n + 1) * 2;
	if (b->cap < 256)
		b->cap = 256;
	b->data = xrealloc(b->data, b->cap);
}

/* Append n bytes of s (the buffer stays NUL-terminated). */
void
buf_add(Buf *b, const char *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_puts(Buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* Append fmt formatted: in place, formatted again only if it did not fit. */
void
buf_printf(Buf *b, const char *fmt,...)
{
	va_list		ap;
	size_t		room;
	int			n;

	buf_reserve(b, 255);
	room = b->cap - b->len;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, room, fmt, ap);
	va_end(ap);
	if ((size_t) n >= room)
	{
		buf_reserve(b, n);
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += n;
}

/* Append s escaped for HTML text and attribute values (NULL as nothing). */
void
buf_html(Buf *b, const char *s)
{
	for (; s && *s; s++)
	{
		switch (*s)
		{
			case '&':
				buf_puts(b, "&amp;");
				break;
			case '<':
				buf_puts(b, "&lt;");
				break;
			case '>':
				buf_puts(b, "&gt;");
				break;
			case '"':
				buf_puts(b, "&quot;");
				break;
			case '\'':
				buf_puts(b, "&#39;");
				break;
			default:
				buf_add(b, s, 1);
		}
	}
}

/* Append s percent-encoded for a URL's query (then HTML-safe as well). */
void
buf_url(Buf *b, const char *s)
{
	for (; s && *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')
			buf_add(b, s, 1);
		else
			buf_printf(b, "%%%02X", c);
	}
}

void
buf_free(Buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/*
 * page_begin
 *		The head of an HTML page: the navigation, the role logged in with its
 *		logout form, and the message the last action left.
 */
void
page_begin(Request *r, const char *title)
{
	Buf		   *b = &r->body;
	Session    *s = r->session;

	r->content_type = "text/html; charset=utf-8";
	buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
			 "<meta name=\"viewport\" content=\"width=device-width\">"
			 "<link rel=\"stylesheet\" href=\"/style.css\"><title>");
	buf_html(b, title);
	buf_puts(b, " · chancy</title></head><body><header><a class=\"brand\" href=\"/\">chancy</a>");
	if (s)
	{
		buf_puts(b, "<a href=\"/\">Overview</a><a href=\"/jobs\">Jobs</a>"
				 "<a href=\"/queues\">Queues</a><a href=\"/schedules\">Schedules</a>"
				 "<a href=\"/workers\">Workers</a><a href=\"/limits\">Limits</a>"
				 "<a href=\"/workflows\">Workflows</a>"
				 "<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"");
		buf_puts(b, s->csrf);
		buf_puts(b, "\"><span id=\"role\">");
		buf_html(b, s->role);
		buf_puts(b, "</span> <button>Log out</button></form>");
	}
	buf_puts(b, "</header><main><h1>");
	buf_html(b, title);
	buf_puts(b, "</h1>");
	if (s && s->flash[0])
	{
		buf_printf(b, "<p class=\"flash%s\" id=\"flash\">", s->flash_error ? " error" : "");
		buf_html(b, s->flash);
		buf_puts(b, "</p>");
		s->flash[0] = '\0';
	}
}

void
page_end(Request *r)
{
	buf_puts(&r->body, "</main></body></html>\n");
}

/*
 * error_page
 *		Answer with status and a page saying what went wrong (what came
 *		before in the body is dropped).
 */
void
error_page(Request *r, int status, const char *fmt,...)
{
	va_list		ap;
	char		msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->status = status;
	r->body.len = 0;
	r->location[0] = '\0';
	page_begin(r, status == 404 ? "Not found" : "Error");
	buf_puts(&r->body, "<p class=\"flash error\" id=\"error\">");
	buf_html(&r->body, msg);
	buf_puts(&r->body, "</p><p><a href=\"/\">Back to the overview</a></p>");
	page_end(r);
}

/*
 * result_table
 *		A query's result as a table; the values of link_column link to
 *		link_prefix followed by the value.  Numbers are right-aligned, and a
 *		"state" or "status" column is coloured by its value; each cell names
 *		its column (data-col), for the tests.
 */
void
result_table(Request *r, PGresult *res, const char *link_column, const char *link_prefix)
{
	Buf		   *b = &r->body;
	int			ncols = PQnfields(res);
	int			link = link_column ? PQfnumber(res, link_column) : -1;

	if (PQntuples(res) == 0)
	{
		buf_puts(b, "<p class=\"empty\">None.</p>");
		return;
	}
	buf_puts(b, "<table><tr>");
	for (int c = 0; c < ncols; c++)
	{
		buf_puts(b, "<th>");
		buf_html(b, PQfname(res, c));
		buf_puts(b, "</th>");
	}
	buf_puts(b, "</tr>");
	for (int row = 0; row < PQntuples(res); row++)
	{
		buf_puts(b, "<tr>");
		for (int c = 0; c < ncols; c++)
		{
			const char *v = PQgetvalue(res, row, c);
			const char *name = PQfname(res, c);
			Oid			type = PQftype(res, c);
			bool		num = type == 20 || type == 21 || type == 23 || type == 700 ||
				type == 701 || type == 1700;

			buf_puts(b, "<td data-col=\"");
			buf_html(b, name);
			if (strcmp(name, "state") == 0 || strcmp(name, "status") == 0)
			{
				buf_puts(b, "\" class=\"state-");
				buf_html(b, v);
			}
			buf_puts(b, num ? "\" class=\"num\">" : "\">");
			if (c == link && !PQgetisnull(res, row, c))
			{
				buf_puts(b, "<a href=\"");
				buf_puts(b, link_prefix);
				buf_url(b, v);
				buf_puts(b, "\">");
				buf_html(b, v);
				buf_puts(b, "</a>");
			}
			else
				buf_html(b, v);
			buf_puts(b, "</td>");
		}
		buf_puts(b, "</tr>");
	}
	buf_puts(b, "</table>");
}

/*
 * svg_chart
 *		A line chart of the last CHART_POINTS minutes, oldest on the left:
 *		one line per series, a scale rounded up to 1, 2 or 5 times a power
 *		of ten, and a legend.  Minutes without a value break the line.
 */
void
svg_chart(Buf *b, const char *id, const char *title, const char *unit,
		  const Series *series, int nseries)
{
	static const char *const colors[] = {"#1565c0", "#c62828", "#2e8540", "#6a1b9a"};
	const int	w = 360, h = 150, left = 44, top = 22, bottom = 20, right = 8;
	const int	pw = w - left - right, ph = h - top - bottom;
	double		max = 0, scale;

	for (int s = 0; s < nseries; s++)
		for (int i = 0; i < CHART_POINTS; i++)
			if (!isnan(series[s].v[i]) && series[s].v[i] > max)
				max = series[s].v[i];
	/* the smallest of 1, 2, 5 times a power of ten at or above max */
	scale = 1;
	if (max > 0)
	{
		double		p = pow(10, floor(log10(max)));

		scale = max <= p ? p : max <= 2 * p ? 2 * p : max <= 5 * p ? 5 * p : 10 * p;
	}

	buf_printf(b, "<svg class=\"chart\" id=\"");
	buf_html(b, id);
	buf_printf(b, "\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">"
			   "<title>", w, h, w, h);
	buf_html(b, title);
	buf_puts(b, "</title><text x=\"4\" y=\"14\" font-size=\"12\" font-weight=\"600\">");
	buf_html(b, title);
	buf_puts(b, "</text>");
	for (int g = 0; g <= 4; g++)
	{
		double		y = top + ph - ph * g / 4.0;

		buf_printf(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e4e8\"/>"
				   "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%g%s</text>",
				   left, left + pw, y, y, left - 4, y + 3, scale * g / 4, g == 4 ? unit : "");
	}
	buf_printf(b, "<text x=\"%d\" y=\"%d\" font-size=\"10\">-60 min</text>"
			   "<text x=\"%d\" y=\"%d\" font-size=\"10\" text-anchor=\"end\">now</text>",
			   left, h - 4, left + pw, h - 4);
	for (int s = 0; s < nseries; s++)
	{
		const double *v = series[s].v;
		const char *color = colors[s % 4];

		for (int i = 0; i < CHART_POINTS; i++)
		{
			double		x = left + pw * i / (double) (CHART_POINTS - 1);
			double		y = top + ph - ph * v[i] / scale;
			bool		first = i == 0 || isnan(v[i - 1]);
			bool		last = i + 1 == CHART_POINTS || isnan(v[i + 1]);

			if (isnan(v[i]))
				continue;
			if (first)
				buf_printf(b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\""
						   " stroke-width=\"1.5\" points=\"", color);
			buf_printf(b, "%s%.1f,%.1f", first ? "" : " ", x, y);
			if (last)
				buf_puts(b, "\"/>");
			/* a lone point shows as a dot */
			if (first && last)
				buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\" fill=\"%s\"/>",
						   x, y, color);
		}
		buf_printf(b, "<text x=\"%d\" y=\"14\" font-size=\"10\" fill=\"%s\">",
				   w - right - 70 * (nseries - s), color);
		buf_html(b, series[s].label);
		buf_puts(b, "</text>");
	}
	buf_puts(b, "</svg>");
}
