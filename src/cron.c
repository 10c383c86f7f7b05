/*
 * cron.c
 *     Cron expressions of rungate.schedules: the parser and "the latest tick
 *     in (after, upto]" (docs/scheduling.md, "Recurring runs").
 *
 * Five fields, minute hour day-of-month month day-of-week, each a list of
 * `*`, values and ranges, optionally stepped (`*\/15`, `1-30/2`); names
 * `jan`..`dec` and `sun`..`sat` (any case) in the month and day-of-week
 * fields; day-of-week 0 and 7 are Sunday. `@yearly`, `@annually`,
 * `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly` stand for their
 * usual five fields. Days follow Vixie cron: when the day-of-month and the
 * day-of-week fields both begin with something other than `*`, a day
 * matches if either field does; otherwise both must. Ticks are whole
 * minutes, evaluated in UTC, with no time zone and no daylight saving.
 *
 * Pure computation: no SPI, no catalog access, no allocation, no ereport
 * (errors come back as a message in the caller's buffer). The latest tick
 * is found by walking back field by field (a month, a day, an hour at a
 * time, minutes by bit search), so its cost depends on the gap between
 * ticks, never on how far back `after` lies. Expressions that can never
 * fire (`0 0 30 2 *`) are refused by the parser, so the walk always ends.
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/pg_bitutils.h"

#include "rungate.h"

/* one field's rules */
typedef struct CronField
{
	const char *name;
	int			low;
	int			high;
	const char *const *names;	/* NULL: numbers only */
	int			names_base;		/* value of names[0] */
} CronField;

static const char *const month_names[] = {
	"jan", "feb", "mar", "apr", "may", "jun",
	"jul", "aug", "sep", "oct", "nov", "dec", NULL
};

static const char *const weekday_names[] = {
	"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL
};

static const CronField fields[5] = {
	{"minute", 0, 59, NULL, 0},
	{"hour", 0, 23, NULL, 0},
	{"day-of-month", 1, 31, NULL, 0},
	{"month", 1, 12, month_names, 1},
	{"day-of-week", 0, 7, weekday_names, 0},
};

static const struct
{
	const char *name;
	const char *fields;
}			macros[] = {
	{"@yearly", "0 0 1 1 *"},
	{"@annually", "0 0 1 1 *"},
	{"@monthly", "0 0 1 * *"},
	{"@weekly", "0 0 * * 0"},
	{"@daily", "0 0 * * *"},
	{"@midnight", "0 0 * * *"},
	{"@hourly", "0 * * * *"},
};

/* a sane bound on an expression's length and on a number's digits */
#define CRON_MAX_LEN	1000
#define CRON_MAX_DIGITS 4

/* safety bound of the walk; a parsed expression needs far fewer steps */
#define CRON_MAX_STEPS	200000

#define MINUTES_PER_DAY 1440
/* days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch) */
#define PG_EPOCH_DAYS	10957

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static char
lower_ascii(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
}

static bool
is_alpha(char c)
{
	c = lower_ascii(c);
	return c >= 'a' && c <= 'z';
}

/*
 * A value at *p: digits, or a name where the field has names. Advances *p.
 */
static bool
parse_value(const CronField *f, const char **p, int *value, char *err, size_t errlen)
{
	const char *s = *p;

	if (*s >= '0' && *s <= '9')
	{
		int			v = 0,
					n = 0;

		while (*s >= '0' && *s <= '9')
		{
			if (++n > CRON_MAX_DIGITS)
			{
				snprintf(err, errlen, "%s field: number too long", f->name);
				return false;
			}
			v = v * 10 + (*s - '0');
			s++;
		}
		*value = v;
		*p = s;
		return true;
	}
	if (is_alpha(*s))
	{
		char		word[8];
		int			n = 0,
					i;

		while (n < (int) sizeof(word) - 1 && is_alpha(s[n]))
		{
			word[n] = lower_ascii(s[n]);
			n++;
		}
		word[n] = '\0';
		if (is_alpha(s[n]))
		{
			snprintf(err, errlen, "%s field: unknown name \"%.*s...\"", f->name, n, s);
			return false;
		}
		if (f->names == NULL)
		{
			snprintf(err, errlen, "%s field: names such as \"%s\" are accepted only in the month and day-of-week fields",
					 f->name, word);
			return false;
		}
		for (i = 0; f->names[i] != NULL; i++)
		{
			if (strcmp(f->names[i], word) == 0)
			{
				*value = f->names_base + i;
				*p = s + n;
				return true;
			}
		}
		snprintf(err, errlen, "%s field: unknown name \"%s\" (expected %s)", f->name, word,
				 f->names == month_names ? "jan..dec" : "sun..sat");
		return false;
	}
	if (*s == '\0')
		snprintf(err, errlen, "%s field: a value is missing at its end", f->name);
	else
		snprintf(err, errlen, "%s field: unexpected character \"%c\"", f->name, *s);
	return false;
}

static bool
check_range(const CronField *f, int v, char *err, size_t errlen)
{
	if (v < f->low || v > f->high)
	{
		snprintf(err, errlen, "%s field: %d is out of range %d-%d", f->name, v, f->low, f->high);
		return false;
	}
	return true;
}

/*
 * One field, text [s, end), into a bit set (bit n: value n). *star: the
 * field begins with '*' (what Vixie cron's day rule looks at).
 */
static bool
parse_field(const CronField *f, const char *s, const char *end, uint64 *bits,
			bool *star, char *err, size_t errlen)
{
	char		buf[CRON_MAX_LEN + 1];
	const char *p;
	size_t		len = end - s;

	memcpy(buf, s, len);
	buf[len] = '\0';
	p = buf;
	*bits = 0;
	*star = (*p == '*');

	for (;;)
	{
		int			lo,
					hi,
					step = 1,
					v;
		bool		single = false;

		if (*p == '*')
		{
			lo = f->low;
			hi = f->high;
			p++;
		}
		else
		{
			if (!parse_value(f, &p, &lo, err, errlen) ||
				!check_range(f, lo, err, errlen))
				return false;
			if (*p == '-')
			{
				p++;
				if (!parse_value(f, &p, &hi, err, errlen) ||
					!check_range(f, hi, err, errlen))
					return false;
				if (hi < lo)
				{
					snprintf(err, errlen, "%s field: range %d-%d runs backwards", f->name, lo, hi);
					return false;
				}
			}
			else
			{
				hi = lo;
				single = true;
			}
		}
		if (*p == '/')
		{
			const char *digits;
			int			n = 0;

			if (single)
			{
				snprintf(err, errlen, "%s field: a step needs a range or *: write %d-%d/... rather than %d/...",
						 f->name, lo, f->high, lo);
				return false;
			}
			p++;
			digits = p;
			step = 0;
			while (*p >= '0' && *p <= '9')
			{
				if (++n > CRON_MAX_DIGITS)
				{
					snprintf(err, errlen, "%s field: step too long", f->name);
					return false;
				}
				step = step * 10 + (*p - '0');
				p++;
			}
			if (p == digits)
			{
				snprintf(err, errlen, "%s field: a step must be a number", f->name);
				return false;
			}
			if (step < 1 || step > f->high)
			{
				snprintf(err, errlen, "%s field: step %d is out of range 1-%d", f->name, step, f->high);
				return false;
			}
		}
		for (v = lo; v <= hi; v += step)
			*bits |= UINT64CONST(1) << v;

		if (*p == '\0')
			break;
		if (*p != ',')
		{
			snprintf(err, errlen, "%s field: unexpected character \"%c\"", f->name, *p);
			return false;
		}
		p++;
		if (*p == '\0')
		{
			snprintf(err, errlen, "%s field: a list must not end with a comma", f->name);
			return false;
		}
	}
	return true;
}

/* ---- the calendar (proleptic Gregorian, days since 1970-01-01) ---- */

static int64
floor_div(int64 a, int64 b)
{
	int64		q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

static void
civil_from_days(int64 z, int64 *year, int *month, int *day)
{
	int64		era,
				doe,
				yoe,
				doy,
				mp;

	z += 719468;
	era = floor_div(z, 146097);
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*day = (int) (doy - (153 * mp + 2) / 5 + 1);
	*month = (int) (mp < 10 ? mp + 3 : mp - 9);
	*year = yoe + era * 400 + (*month <= 2);
}

static int64
days_from_civil(int64 y, int m, int d)
{
	int64		era,
				yoe,
				doy,
				doe;

	y -= m <= 2;
	era = floor_div(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
weekday_of(int64 z)
{
	return (int) (z - floor_div(z + 4, 7) * 7 + 4);	/* 1970-01-01: Thursday */
}

static bool
is_leap(int64 y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int64 y, int m)
{
	static const int days[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return (m == 2 && is_leap(y)) ? 29 : days[m];
}

static bool
day_matches(const RgCron *c, int day, int weekday)
{
	bool		dom = (c->days >> day) & 1;
	bool		dow = (c->weekdays >> weekday) & 1;

	if (c->days_star || c->weekdays_star)
		return dom && dow;
	return dom || dow;
}

/* Whether some date matches: the calendar repeats every 400 years. */
static bool
cron_can_fire(const RgCron *c)
{
	int64		y;
	int			m,
				d;

	if (c->months == 0 || c->days == 0 || c->weekdays == 0)
		return false;
	for (y = 2000; y < 2400; y++)
		for (m = 1; m <= 12; m++)
		{
			if (!((c->months >> m) & 1))
				continue;
			for (d = 1; d <= days_in_month(y, m); d++)
				if (day_matches(c, d, weekday_of(days_from_civil(y, m, d))))
					return true;
		}
	return false;
}

bool
rg_cron_parse(const char *expr, RgCron *c, char *err, size_t errlen)
{
	const char *p = expr;
	const char *start[5];
	const char *end[5];
	int			n = 0,
				i;
	uint64		bits[5];
	bool		star[5];
	size_t		len = strlen(expr);

	memset(c, 0, sizeof(*c));
	if (len > CRON_MAX_LEN)
	{
		snprintf(err, errlen, "longer than %d characters", CRON_MAX_LEN);
		return false;
	}
	while (is_space(*p))
		p++;
	if (*p == '@')
	{
		const char *w = p;
		char		word[16];
		int			wl = 0;

		while (*p && !is_space(*p))
			p++;
		if ((size_t) (p - w) < sizeof(word))
		{
			for (wl = 0; wl < (int) (p - w); wl++)
				word[wl] = lower_ascii(w[wl]);
		}
		word[wl] = '\0';
		for (i = 0; i < (int) lengthof(macros); i++)
			if (wl > 0 && strcmp(word, macros[i].name) == 0)
				break;
		if (i == (int) lengthof(macros))
		{
			snprintf(err, errlen, "unknown macro \"%.*s\" (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)",
					 (int) Min(p - w, 20), w);
			return false;
		}
		while (is_space(*p))
			p++;
		if (*p != '\0')
		{
			snprintf(err, errlen, "%s takes no fields after it", macros[i].name);
			return false;
		}
		return rg_cron_parse(macros[i].fields, c, err, errlen);
	}

	while (*p)
	{
		if (n < 5)
			start[n] = p;
		while (*p && !is_space(*p))
			p++;
		if (n < 5)
			end[n] = p;
		n++;
		while (is_space(*p))
			p++;
	}
	if (n != 5)
	{
		snprintf(err, errlen, "expected 5 fields (minute hour day-of-month month day-of-week), found %d", n);
		return false;
	}

	for (i = 0; i < 5; i++)
		if (!parse_field(&fields[i], start[i], end[i], &bits[i], &star[i], err, errlen))
			return false;

	c->minutes = bits[0];
	c->hours = (uint32) bits[1];
	c->days = (uint32) bits[2];
	c->months = (uint32) bits[3];
	/* day-of-week 7 is Sunday */
	c->weekdays = (uint32) ((bits[4] | (bits[4] >> 7)) & 0x7F);
	c->days_star = star[2];
	c->weekdays_star = star[4];

	if (!cron_can_fire(c))
	{
		snprintf(err, errlen, "it never fires: no date matches its day-of-month, month and day-of-week fields together");
		return false;
	}
	return true;
}

/* the highest bit of bits at or below n (0..63), or -1 */
static int
highest_at_or_below(uint64 bits, int n)
{
	uint64		masked = bits & ((n >= 63) ? ~UINT64CONST(0) : ((UINT64CONST(1) << (n + 1)) - 1));

	return masked ? pg_leftmost_one_pos64(masked) : -1;
}

bool
rg_cron_latest(const RgCron *c, TimestampTz after, TimestampTz upto, TimestampTz *tick)
{
	int64		m;				/* minutes since 2000-01-01 00:00 UTC */
	int			steps;

	if (TIMESTAMP_NOT_FINITE(upto) || TIMESTAMP_NOT_FINITE(after) || upto <= after)
		return false;
	m = floor_div(upto, USECS_PER_MINUTE);

	for (steps = 0; steps < CRON_MAX_STEPS; steps++)
	{
		int64		day = floor_div(m, MINUTES_PER_DAY);
		int			minute_of_day = (int) (m - day * MINUTES_PER_DAY);
		int			hour = minute_of_day / 60;
		int			minute = minute_of_day % 60;
		int64		year;
		int			month,
					mday,
					h,
					mi;

		if (m * USECS_PER_MINUTE <= after)
			return false;
		civil_from_days(day + PG_EPOCH_DAYS, &year, &month, &mday);

		/* the month: else the last minute of the month before */
		if (!((c->months >> month) & 1))
		{
			m = (days_from_civil(year, month, 1) - PG_EPOCH_DAYS) * MINUTES_PER_DAY - 1;
			continue;
		}
		/* the day: else the last minute of the day before */
		if (!day_matches(c, mday, weekday_of(day + PG_EPOCH_DAYS)))
		{
			m = day * MINUTES_PER_DAY - 1;
			continue;
		}
		/* the hour: the latest allowed at or before this one */
		h = highest_at_or_below(c->hours, hour);
		if (h < 0)
		{
			m = day * MINUTES_PER_DAY - 1;
			continue;
		}
		if (h < hour)
		{
			/* the last minute of that hour */
			hour = h;
			minute = 59;
		}
		/* the minute: the latest allowed at or before this one */
		mi = highest_at_or_below(c->minutes, minute);
		if (mi < 0)
		{
			m = day * MINUTES_PER_DAY + (int64) hour * 60 - 1;
			continue;
		}
		m = day * MINUTES_PER_DAY + (int64) hour * 60 + mi;
		if (m * USECS_PER_MINUTE <= after)
			return false;
		*tick = m * USECS_PER_MINUTE;
		return true;
	}
	return false;
}

/*
 * The idempotency key's time: t (a tick, whole minutes) in UTC as
 * YYYY-MM-DD"T"HH24:MI:SS"Z", what to_char(t AT TIME ZONE 'UTC', ...) gives
 * for years 1 to 9999 (and beyond, with more digits).
 */
void
rg_cron_format_utc(TimestampTz t, char *buf, size_t buflen)
{
	int64		secs = floor_div(t, USECS_PER_SEC);
	int64		day = floor_div(secs, SECS_PER_DAY);
	int			sod = (int) (secs - day * SECS_PER_DAY);
	int64		year;
	int			month,
				mday;

	civil_from_days(day + PG_EPOCH_DAYS, &year, &month, &mday);
	snprintf(buf, buflen, "%04lld-%02d-%02dT%02d:%02d:%02dZ",
			 (long long) year, month, mday, sod / 3600, (sod / 60) % 60, sod % 60);
}
