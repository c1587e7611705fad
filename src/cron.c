/*-------------------------------------------------------------------------
 *
 * cron.c
 *	  Cron expressions: parsing them, and the next time one fires in a time
 *	  zone.  Recurring schedules are built on chancy_cron_next_time(); users
 *	  check an expression with chancy_cron_next() and chancy_cron_preview().
 *
 * The syntax is Vixie cron's, with a leading seconds field allowed:
 *
 *	  [second] minute hour day-of-month month day-of-week
 *
 * each field a comma list of "*", "N", "N-M", with an optional "/step";
 * months and weekdays also by their English three-letter names, Sunday as 0
 * or 7, and "L" (the last day of the month) in the day-of-month field.  When
 * both day fields are restricted a day matches if either does (Vixie's
 * rule); a field that begins with "*" does not restrict.  The macros
 * @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly stand
 * for their usual expressions; "@every <interval>" and pg_cron's
 * "N seconds" fire at a fixed period counted from the Unix epoch, so they
 * ignore time zones and DST.
 *
 * A cron expression reads wall-clock time in its time zone.  A local time
 * that a DST jump skips fires once, at the first instant after the gap; a
 * local time that falling back repeats fires once, at its first occurrence.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/xact.h"
#include "funcapi.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

/* How far ahead an expression may next fire before it counts as never */
#define CRON_HORIZON_YEARS 40

/* The longest period of @every, in days */
#define EVERY_MAX_DAYS 366

/* The most fire times chancy_cron_preview() lists */
#define CRON_PREVIEW_MAX 1000

/* Seconds since the Unix epoch of PostgreSQL's epoch, 2000-01-01 UTC */
#define POSTGRES_EPOCH_SECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)

#define CRON_HINT \
	"A cron expression is five fields (minute hour day-of-month month day-of-week), " \
	"or six with a leading second, each a comma list of *, N, N-M or N-M/step; " \
	"or one of @yearly, @monthly, @weekly, @daily, @hourly, @every <interval>, or \"N seconds\"."

/* The fields of a cron expression, in order, with the seconds field first */
typedef enum CronFieldKind
{
	CRON_SECOND,
	CRON_MINUTE,
	CRON_HOUR,
	CRON_DAY,
	CRON_MONTH,
	CRON_WEEKDAY,
	CRON_NFIELDS
} CronFieldKind;

typedef struct CronFieldInfo
{
	const char *name;
	int			min;
	int			max;
	const char *const *names;	/* names[i] stands for min + i, or NULL */
} CronFieldInfo;

static const char *const month_names[] =
{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const weekday_names[] =
{"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const CronFieldInfo cron_fields[CRON_NFIELDS] =
{
	{"second", 0, 59, NULL},
	{"minute", 0, 59, NULL},
	{"hour", 0, 23, NULL},
	{"day-of-month", 1, 31, NULL},
	{"month", 1, 12, month_names},
	{"day-of-week", 0, 7, weekday_names},
};

static const struct
{
	const char *macro;
	const char *expr;
}			cron_macros[] =
{
	{"@yearly", "0 0 1 1 *"},
	{"@annually", "0 0 1 1 *"},
	{"@monthly", "0 0 1 * *"},
	{"@weekly", "0 0 * * 0"},
	{"@daily", "0 0 * * *"},
	{"@midnight", "0 0 * * *"},
	{"@hourly", "0 * * * *"},
};

/*
 * A parsed expression: either a fixed period, or for each field the set of
 * values that match, as bits.
 */
typedef struct CronExpr
{
	int64		period_us;		/* > 0: fires every period_us from the epoch */
	uint64		bits[CRON_NFIELDS];
	bool		last_day;		/* "L" in the day-of-month field */
	bool		day_star;		/* day-of-month field begins with "*" */
	bool		weekday_star;	/* day-of-week field begins with "*" */
} CronExpr;

/* A local wall-clock time, as the search walks it */
typedef struct CronTime
{
	int			year;
	int			month;			/* 1..12 */
	int			day;			/* 1..31 */
	int			hour;
	int			minute;
	int			second;
} CronTime;

/*
 * cron_error
 *		Report that expr is not a cron expression, with the detail given.
 */
static void
pg_attribute_noreturn()
cron_error(const char *expr, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid cron expression \"%s\"", expr),
			 errdetail_internal("%s", detail),
			 errhint(CRON_HINT)));
}

/*
 * field_error
 *		Report a bad item of one field, naming the field and the item.
 */
static void
pg_attribute_noreturn()
field_error(const char *expr, CronFieldKind kind, const char *item,
			const char *reason)
{
	cron_error(expr, psprintf("The %s field's \"%s\" %s.",
							  cron_fields[kind].name, item, reason));
}

/*
 * parse_value
 *		One number or name of a field, or -1 when text is neither.
 */
static int
parse_value(const CronFieldInfo *field, const char *text, int len)
{
	int			value = 0;

	if (len == 0)
		return -1;
	if (isdigit((unsigned char) text[0]))
	{
		for (int i = 0; i < len; i++)
		{
			if (!isdigit((unsigned char) text[i]) || value > 1000)
				return -1;
			value = value * 10 + (text[i] - '0');
		}
		return value;
	}
	if (field->names != NULL && len == 3)
	{
		for (int i = 0; field->names[i] != NULL; i++)
			if (pg_strncasecmp(text, field->names[i], 3) == 0)
				return field->min + i;
	}
	return -1;
}

/*
 * parse_item
 *		Set the bits of one comma-separated item of a field: "*", "N", "N-M",
 *		each with an optional "/step" ("N/step" runs from N to the field's
 *		end), or "L" in the day-of-month field.
 */
static void
parse_item(const char *expr, CronFieldKind kind, const char *item,
		   CronExpr *cron)
{
	const CronFieldInfo *field = &cron_fields[kind];
	const char *slash = strchr(item, '/');
	int			baselen = slash ? slash - item : strlen(item);
	const char *dash = memchr(item, '-', baselen);
	int			lo;
	int			hi;
	int			step = 1;
	int			max_step = (kind == CRON_WEEKDAY) ? 7 : field->max - field->min + 1;

	if (baselen == 1 && (item[0] == 'L' || item[0] == 'l') && slash == NULL)
	{
		if (kind != CRON_DAY)
			field_error(expr, kind, item,
						"is only allowed in the day-of-month field");
		cron->last_day = true;
		return;
	}

	if (baselen == 1 && item[0] == '*')
	{
		lo = field->min;
		hi = (kind == CRON_WEEKDAY) ? 6 : field->max;
	}
	else
	{
		int			lolen = dash ? dash - item : baselen;

		lo = parse_value(field, item, lolen);
		hi = dash ? parse_value(field, dash + 1, baselen - lolen - 1) : lo;
		if (lo < 0 || hi < 0)
			field_error(expr, kind, item,
						field->names
						? "is not a number, a name, \"*\" or a range"
						: "is not a number, \"*\" or a range");
		if (lo < field->min || hi > field->max)
			field_error(expr, kind, item,
						psprintf("is out of range: values are %d to %d",
								 field->min, field->max));
		if (lo > hi)
			field_error(expr, kind, item, "is a range that ends before it starts");
		if (slash != NULL && dash == NULL)
			hi = field->max;
	}

	if (slash != NULL)
	{
		const char *s = slash + 1;

		step = 0;
		if (*s == '\0')
			field_error(expr, kind, item, "has no step after \"/\"");
		for (; *s; s++)
		{
			if (!isdigit((unsigned char) *s) || step > 1000)
				field_error(expr, kind, item, "has a step that is not a number");
			step = step * 10 + (*s - '0');
		}
		if (step < 1 || step > max_step)
			field_error(expr, kind, item,
						psprintf("has a step out of range: steps are 1 to %d",
								 max_step));
	}

	for (int v = lo; v <= hi; v += step)
		cron->bits[kind] |= UINT64CONST(1) << (kind == CRON_WEEKDAY ? v % 7 : v);
}

/*
 * parse_field
 *		Parse one whitespace-separated field, a comma list of items.
 */
static void
parse_field(const char *expr, CronFieldKind kind, char *text, CronExpr *cron)
{
	const char *whole = pstrdup(text);
	char	   *item = text;

	if (kind == CRON_DAY)
		cron->day_star = (text[0] == '*');
	if (kind == CRON_WEEKDAY)
		cron->weekday_star = (text[0] == '*');

	for (;;)
	{
		char	   *comma = strchr(item, ',');

		if (comma)
			*comma = '\0';
		if (*item == '\0')
			field_error(expr, kind, whole, "has an empty item in its list");
		parse_item(expr, kind, item, cron);
		if (!comma)
			break;
		item = comma + 1;
	}
}

/*
 * parse_every
 *		"@every <interval>": a fixed period of at least a second, in whole
 *		seconds; a day counts as 24 hours, months are refused (they have no
 *		fixed length).
 */
static void
parse_every(const char *expr, const char *text, CronExpr *cron)
{
	MemoryContext context = CurrentMemoryContext;
	Interval   *period = NULL;

	while (isspace((unsigned char) *text))
		text++;
	if (*text == '\0')
		cron_error(expr, "@every needs an interval, such as \"@every 90 seconds\".");

	/*
	 * interval_in() only reads its argument, so its error can be replaced by
	 * ours without a subtransaction.
	 */
	PG_TRY();
	{
		period = DatumGetIntervalP(DirectFunctionCall3(interval_in,
													   CStringGetDatum(text),
													   ObjectIdGetDatum(InvalidOid),
													   Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		ErrorData  *error;

		MemoryContextSwitchTo(context);
		error = CopyErrorData();
		FlushErrorState();
		cron_error(expr, psprintf("\"%s\" is not an interval: %s.",
								  text, error->message));
	}
	PG_END_TRY();
	if (period->month != 0)
		cron_error(expr, "The interval of @every may not have months or years: they have no fixed length.");
	if (period->day < -EVERY_MAX_DAYS || period->day > EVERY_MAX_DAYS ||
		period->time < -EVERY_MAX_DAYS * USECS_PER_DAY ||
		period->time > EVERY_MAX_DAYS * USECS_PER_DAY)
		cron_error(expr, psprintf("The interval of @every must be at most %d days.", EVERY_MAX_DAYS));
	cron->period_us = period->time + (int64) period->day * USECS_PER_DAY;
	if (cron->period_us > EVERY_MAX_DAYS * USECS_PER_DAY)
		cron_error(expr, psprintf("The interval of @every must be at most %d days.", EVERY_MAX_DAYS));
	if (cron->period_us < USECS_PER_SEC || cron->period_us % USECS_PER_SEC != 0)
		cron_error(expr, "The interval of @every must be a whole number of seconds, at least one.");
}

/*
 * parse_seconds
 *		pg_cron's "N seconds" (or "N second"), N from 1 to 59; false when
 *		text does not have that form.
 */
static bool
parse_seconds(const char *expr, const char *text, CronExpr *cron)
{
	const char *p = text;
	int			n = 0;

	if (!isdigit((unsigned char) *p))
		return false;
	while (isdigit((unsigned char) *p) && n <= 1000)
		n = n * 10 + (*p++ - '0');
	while (isspace((unsigned char) *p))
		p++;
	if (pg_strcasecmp(p, "second") != 0 && pg_strcasecmp(p, "seconds") != 0)
		return false;
	if (n < 1 || n > 59)
		cron_error(expr, psprintf("\"%s\" is out of range: a period in seconds is 1 to 59 seconds (use @every for longer ones).", text));
	cron->period_us = n * USECS_PER_SEC;
	return true;
}

/*
 * chancy_cron_parse
 *		Parse a cron expression into *cron, or raise an error that names the
 *		field and the value at fault.
 */
static void
chancy_cron_parse(const char *expr, CronExpr *cron)
{
	char	   *text = pstrdup(expr);
	char	   *fields[CRON_NFIELDS + 1];
	int			nfields = 0;
	char	   *p;

	memset(cron, 0, sizeof(*cron));

	/* trim */
	while (isspace((unsigned char) *text))
		text++;
	for (p = text + strlen(text); p > text && isspace((unsigned char) p[-1]); p--)
		p[-1] = '\0';
	if (*text == '\0')
		cron_error(expr, "The expression is empty.");

	if (parse_seconds(expr, text, cron))
		return;
	if (text[0] == '@')
	{
		if (pg_strncasecmp(text, "@every", 6) == 0 &&
			(text[6] == '\0' || isspace((unsigned char) text[6])))
		{
			parse_every(expr, text + 6, cron);
			return;
		}
		for (int i = 0; i < lengthof(cron_macros); i++)
			if (pg_strcasecmp(text, cron_macros[i].macro) == 0)
			{
				text = pstrdup(cron_macros[i].expr);
				break;
			}
		if (text[0] == '@')
			cron_error(expr, psprintf("\"%s\" is not a macro: they are @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly and @every <interval>.", text));
	}

	/* split into fields */
	for (p = text; *p;)
	{
		while (isspace((unsigned char) *p))
			*p++ = '\0';
		if (*p == '\0')
			break;
		if (nfields == CRON_NFIELDS)
			cron_error(expr, "The expression has more than six fields.");
		fields[nfields++] = p;
		while (*p && !isspace((unsigned char) *p))
			p++;
	}
	if (nfields < CRON_NFIELDS - 1)
		cron_error(expr, psprintf("The expression has %d field%s; it needs five, or six with seconds.",
								  nfields, nfields == 1 ? "" : "s"));

	for (int i = 0; i < nfields; i++)
	{
		CronFieldKind kind = (CronFieldKind) (i + CRON_NFIELDS - nfields);

		parse_field(expr, kind, fields[i], cron);
	}
	if (nfields == CRON_NFIELDS - 1)
		cron->bits[CRON_SECOND] = 1;	/* second 0 */
}

/*
 * next_bit
 *		The smallest value >= from whose bit is set, or -1.
 */
static int
next_bit(uint64 bits, int from, int max)
{
	for (int v = from; v <= max; v++)
		if (bits & (UINT64CONST(1) << v))
			return v;
	return -1;
}

static int
days_in_month(int year, int month)
{
	return day_tab[isleap(year)][month - 1];
}

/*
 * day_matches
 *		Whether the cron expression fires on this date: Vixie's rule, either
 *		day field when both are restricted, both otherwise.
 */
static bool
day_matches(const CronExpr *cron, int year, int month, int day)
{
	bool		by_day;
	bool		by_weekday;

	by_day = (cron->bits[CRON_DAY] & (UINT64CONST(1) << day)) != 0 ||
		(cron->last_day && day == days_in_month(year, month));
	by_weekday = (cron->bits[CRON_WEEKDAY] &
				  (UINT64CONST(1) << j2day(date2j(year, month, day)))) != 0;

	if (!cron->day_star && !cron->weekday_star)
		return by_day || by_weekday;
	return by_day && by_weekday;
}

/*
 * next_local
 *		Move *t forward to the first wall-clock time at or after it that the
 *		expression matches; false if there is none before year limit.
 */
static bool
next_local(const CronExpr *cron, CronTime *t, int limit)
{
	/*
	 * Each turn looks at the largest field that does not match and moves it
	 * on; a field moved past its last value (second 60, month 13) carries
	 * into the next larger one, which the next turn looks at.
	 */
	while (t->year <= limit)
	{
		int			v;

		if ((cron->bits[CRON_MONTH] & (UINT64CONST(1) << t->month)) == 0)
		{
			v = next_bit(cron->bits[CRON_MONTH], t->month, 12);
			if (v < 0)
			{
				t->year++;
				v = next_bit(cron->bits[CRON_MONTH], 1, 12);
			}
			t->month = v;
			t->day = 1;
			t->hour = t->minute = t->second = 0;
			continue;
		}
		if (t->day > days_in_month(t->year, t->month))
		{
			t->month++;
			t->day = 1;
			t->hour = t->minute = t->second = 0;
			continue;
		}
		if (!day_matches(cron, t->year, t->month, t->day))
		{
			t->day++;
			t->hour = t->minute = t->second = 0;
			continue;
		}
		v = next_bit(cron->bits[CRON_HOUR], t->hour, 23);
		if (v != t->hour)
		{
			if (v < 0)
				t->day++;
			t->hour = Max(v, 0);
			t->minute = t->second = 0;
			continue;
		}
		v = next_bit(cron->bits[CRON_MINUTE], t->minute, 59);
		if (v != t->minute)
		{
			if (v < 0)
				t->hour++;
			t->minute = Max(v, 0);
			t->second = 0;
			continue;
		}
		v = next_bit(cron->bits[CRON_SECOND], t->second, 59);
		if (v != t->second)
		{
			if (v < 0)
				t->minute++;
			t->second = Max(v, 0);
			continue;
		}
		return true;
	}
	return false;
}

/*
 * utc_offset
 *		The offset from UTC, in seconds east, in force at instant secs (Unix
 *		time) in time zone tz.
 */
static long
utc_offset(pg_time_t secs, pg_tz *tz)
{
	struct pg_tm *tm = pg_localtime(&secs, tz);

	if (tm == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return tm->tm_gmtoff;
}

/* The local time t read as if it were UTC, in Unix seconds */
static pg_time_t
local_as_utc(const CronTime *t)
{
	return (pg_time_t) (date2j(t->year, t->month, t->day) - UNIX_EPOCH_JDATE) * SECS_PER_DAY +
		t->hour * SECS_PER_HOUR + t->minute * SECS_PER_MINUTE + t->second;
}

/*
 * local_to_instant
 *		The instant (Unix seconds) at which the wall clock of tz first reads
 *		*t, or if *t falls in a DST gap, the first instant after the gap.
 *
 * Offsets are sampled 16 hours either side (no zone is further than that
 * from UTC), so a time between two transitions less than a day and a half
 * apart could be read wrong; no zone has had that since standard time began.
 */
static pg_time_t
local_to_instant(const CronTime *t, pg_tz *tz)
{
	pg_time_t	local = local_as_utc(t);
	long		before = utc_offset(local - 16 * SECS_PER_HOUR, tz);
	long		after = utc_offset(local + 16 * SECS_PER_HOUR, tz);
	pg_time_t	lo;
	pg_time_t	hi;

	/* the earlier reading first: the first occurrence when it repeats */
	if (utc_offset(local - Max(before, after), tz) == Max(before, after))
		return local - Max(before, after);
	if (utc_offset(local - Min(before, after), tz) == Min(before, after))
		return local - Min(before, after);

	/*
	 * A gap: the clock jumps from before to after.  The transition lies in
	 * (local - after, local - before]; find its first second.
	 */
	lo = local - after;
	hi = local - before;
	while (hi - lo > 1)
	{
		pg_time_t	mid = lo + (hi - lo) / 2;

		if (utc_offset(mid, tz) == after)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/* Report that name is not a time zone (for the reason detail, if given). */
static void
pg_attribute_noreturn()
zone_error(const char *name, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("time zone \"%s\" not recognized", name),
			 detail ? errdetail_internal("%s", detail) : 0,
			 errhint("Use a name from pg_timezone_names, such as \"Europe/Berlin\" or \"UTC\".")));
}

/*
 * chancy_lookup_time_zone
 *		The time zone of that name, or an error.
 */
pg_tz *
chancy_lookup_time_zone(const char *name)
{
	pg_tz	   *tz = pg_tzset(name);

	if (tz == NULL)
		zone_error(name, NULL);
	return tz;
}

/* A zone of the time zone database: its name in upper case, and as named */
typedef struct ZoneName
{
	char		key[TZ_STRLEN_MAX + 1];
	char		name[TZ_STRLEN_MAX + 1];
} ZoneName;

/*
 * chancy_zone_name
 *		The name, as the time zone database spells it, of the zone called
 *		name in any case; an error for anything else, such as a POSIX time
 *		zone specification.  A schedule keeps only such names: the
 *		supervisor loads (and keeps, for its life) each zone it meets, and
 *		there are only so many of these.  The names are listed once per
 *		process, without loading the zones for good.
 */
const char *
chancy_zone_name(const char *name)
{
	static HTAB *zones = NULL;
	char		key[TZ_STRLEN_MAX + 1];
	ZoneName   *zone;

	if (zones == NULL)
	{
		HASHCTL		ctl;
		pg_tzenum  *all = pg_tzenumerate_start();
		pg_tz	   *tz;

		ctl.keysize = TZ_STRLEN_MAX + 1;
		ctl.entrysize = sizeof(ZoneName);
		zones = hash_create("chancy time zones", 1024, &ctl, HASH_ELEM | HASH_STRINGS);
		while ((tz = pg_tzenumerate_next(all)) != NULL)
		{
			const char *zname = pg_get_timezone_name(tz);

			strlcpy(key, zname, sizeof(key));
			for (char *c = key; *c; c++)
				*c = pg_toupper((unsigned char) *c);
			zone = hash_search(zones, key, HASH_ENTER, NULL);
			strlcpy(zone->name, zname, sizeof(zone->name));
		}
		pg_tzenumerate_end(all);
	}

	strlcpy(key, name, sizeof(key));
	for (char *c = key; *c; c++)
		*c = pg_toupper((unsigned char) *c);
	zone = strlen(name) < sizeof(key) ? hash_search(zones, key, HASH_FIND, NULL) : NULL;
	if (zone == NULL)
		zone_error(name, "A schedule's time zone is one of the time zone database's.");
	return zone->name;
}

/*
 * next_fire
 *		The first time after `after` at which the parsed expression fires in
 *		time zone tz; an error if it never does within the horizon.
 */
static TimestampTz
next_fire(const char *expr, const CronExpr *cron, TimestampTz after, pg_tz *tz)
{
	int64		after_secs;
	pg_time_t	start;
	struct pg_tm *tm;
	CronTime	t;
	int			limit;
	TimestampTz result;

	if (TIMESTAMP_NOT_FINITE(after))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("a cron expression's next time is only defined after a finite time")));

	/* whole seconds since the Unix epoch, rounded down */
	after_secs = after / USECS_PER_SEC - (after % USECS_PER_SEC < 0 ? 1 : 0) +
		POSTGRES_EPOCH_SECS;

	if (cron->period_us > 0)
	{
		int64		period = cron->period_us / USECS_PER_SEC;
		int64		n = after_secs / period - (after_secs % period < 0 ? 1 : 0);

		result = ((n + 1) * period - POSTGRES_EPOCH_SECS) * USECS_PER_SEC;
		if (!IS_VALID_TIMESTAMP(result))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("timestamp out of range")));
		return result;
	}

	start = after_secs + 1;
	tm = pg_localtime(&start, tz);
	if (tm == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	t.year = tm->tm_year + 1900;
	t.month = tm->tm_mon + 1;
	t.day = tm->tm_mday;
	t.hour = tm->tm_hour;
	t.minute = tm->tm_min;
	t.second = tm->tm_sec;
	limit = t.year + CRON_HORIZON_YEARS;

	for (;;)
	{
		pg_time_t	instant;

		if (!next_local(cron, &t, limit))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cron expression \"%s\" never fires", expr),
					 errdetail("No time in the next %d years matches it.",
							   CRON_HORIZON_YEARS),
					 errhint("Check the day-of-month and month fields: a day that no such month has never comes.")));

		instant = local_to_instant(&t, tz);
		if (instant > after_secs)
		{
			result = (instant - POSTGRES_EPOCH_SECS) * USECS_PER_SEC;
			if (!IS_VALID_TIMESTAMP(result))
				ereport(ERROR,
						(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
						 errmsg("timestamp out of range")));
			return result;
		}

		/*
		 * Its first occurrence has passed (a repeated hour), or a DST gap
		 * merged it with an earlier fire: try the next second (next_local()
		 * carries it).
		 */
		t.second++;
	}
}

/*
 * chancy_cron_next_time
 *		The first time after `after` at which expr fires in time zone
 *		tz_name; raises an error for a bad expression or zone, and for one
 *		that never fires.
 */
TimestampTz
chancy_cron_next_time(const char *expr, TimestampTz after, const char *tz_name)
{
	/* the last expression parsed: the supervisor asks about one many times */
	static char *cached_expr = NULL;
	static CronExpr cached;
	pg_tz	   *tz = chancy_lookup_time_zone(tz_name);

	if (cached_expr == NULL || strcmp(cached_expr, expr) != 0)
	{
		CronExpr	cron;

		chancy_cron_parse(expr, &cron);
		if (cached_expr != NULL)
			pfree(cached_expr);
		cached_expr = MemoryContextStrdup(TopMemoryContext, expr);
		cached = cron;
	}
	return next_fire(expr, &cached, after, tz);
}

/*
 * chancy_cron_next(cron text, after timestamptz, time_zone text)
 *		SQL: the first time after `after` that the expression fires.
 */
PG_FUNCTION_INFO_V1(chancy_cron_next);
Datum
chancy_cron_next(PG_FUNCTION_ARGS)
{
	char	   *expr = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TimestampTz after = PG_GETARG_TIMESTAMPTZ(1);
	char	   *tz_name = text_to_cstring(PG_GETARG_TEXT_PP(2));

	PG_RETURN_TIMESTAMPTZ(chancy_cron_next_time(expr, after, tz_name));
}

/*
 * chancy_cron_preview(cron text, n int, time_zone text)
 *		SQL: the next n times the expression fires, after now.
 */
PG_FUNCTION_INFO_V1(chancy_cron_preview);
Datum
chancy_cron_preview(PG_FUNCTION_ARGS)
{
	char	   *expr = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		n = PG_GETARG_INT32(1);
	pg_tz	   *tz = chancy_lookup_time_zone(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz at = GetCurrentTransactionStartTimestamp();
	CronExpr	cron;

	if (n < 1 || n > CRON_PREVIEW_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("n must be between 1 and %d", CRON_PREVIEW_MAX),
				 errdetail("n was %d.", n)));
	chancy_cron_parse(expr, &cron);

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < n; i++)
	{
		Datum		value;
		bool		isnull = false;

		at = next_fire(expr, &cron, at, tz);
		value = TimestampTzGetDatum(at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}
