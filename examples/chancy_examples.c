/*-------------------------------------------------------------------------
 *
 * chancy_examples.c
 *	  Example C jobs for chancy: the seed's greet.
 *
 * A job is an ordinary V1 function taking one jsonb (the keyword arguments):
 * chancy's executors call it, and so can anyone with SELECT greet('{...}').
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(greet);

/*
 * greet(kwargs jsonb) RETURNS jsonb
 *		Log "Hello, <name>!" and return {"greeting": "Hello, <name>!"}.
 */
Datum
greet(PG_FUNCTION_ARGS)
{
	Jsonb	   *kwargs = PG_GETARG_JSONB_P(0);
	JsonbValue	key;
	JsonbValue *name;
	JsonbValue	value;
	JsonbParseState *state = NULL;
	char	   *who = "World";
	char	   *greeting;

	key.type = jbvString;
	key.val.string.val = "name";
	key.val.string.len = 4;
	name = findJsonbValueFromContainer(&kwargs->root, JB_FOBJECT, &key);
	if (name && name->type == jbvString)
		who = pnstrdup(name->val.string.val, name->val.string.len);

	greeting = psprintf("Hello, %s!", who);
	elog(LOG, "%s", greeting);

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	key.val.string.val = "greeting";
	key.val.string.len = 8;
	pushJsonbValue(&state, WJB_KEY, &key);
	value.type = jbvString;
	value.val.string.val = greeting;
	value.val.string.len = strlen(greeting);
	pushJsonbValue(&state, WJB_VALUE, &value);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}
