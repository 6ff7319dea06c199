/*-------------------------------------------------------------------------
 *
 * page_args.c
 *		The arguments of pulse.page and pulse.explain_page: required ones,
 *		and the args JSON array bound to the query's $1..$n.
 *
 * Values are never interpolated into SQL.  Each element of args goes
 * through the input function of the type the parser inferred for its
 * parameter (page_query.c): strings, numbers and booleans as their text,
 * null as SQL NULL, a JSON array as an array value for an array parameter,
 * and objects or arrays as JSON text for json/jsonb parameters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "pulse.h"

void
pulse_page_require_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

Jsonb *
pulse_page_check_args(Jsonb *args)
{
	if (args == NULL)
		return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("[]")));
	if (!JB_ROOT_IS_ARRAY(args) || JB_ROOT_IS_SCALAR(args))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("args must be a JSON array")));
	if (JB_ROOT_COUNT(args) > PULSE_PAGE_MAX_ARGS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("args has %d elements, more than the %d allowed",
						(int) JB_ROOT_COUNT(args), PULSE_PAGE_MAX_ARGS)));
	return args;
}

static void pa_append_array_literal(StringInfo buf, JsonbValue *v);

/* Text form of a scalar JSON value for a type's input function. */
static char *
pa_scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

static void
pa_append_array_elem(StringInfo buf, JsonbValue *v)
{
	if (v->type == jbvNull)
		appendStringInfoString(buf, "NULL");
	else if (v->type == jbvBinary)
		pa_append_array_literal(buf, v);
	else
	{
		char	   *s = pa_scalar_text(v);

		appendStringInfoChar(buf, '"');
		for (; *s; s++)
		{
			if (*s == '"' || *s == '\\')
				appendStringInfoChar(buf, '\\');
			appendStringInfoChar(buf, *s);
		}
		appendStringInfoChar(buf, '"');
	}
}

/* Appends the PostgreSQL array literal of a JSON array (jbvBinary). */
static void
pa_append_array_literal(StringInfo buf, JsonbValue *v)
{
	JsonbContainer *c = v->val.binary.data;
	uint32		n;

	if (!JsonContainerIsArray(c))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a JSON object cannot be an element of an array argument")));
	n = JsonContainerSize(c);
	appendStringInfoChar(buf, '{');
	for (uint32 i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(c, i);

		if (i > 0)
			appendStringInfoChar(buf, ',');
		pa_append_array_elem(buf, e);
	}
	appendStringInfoChar(buf, '}');
}

/* The input text of args[i] (not JSON null) for a parameter of type typ. */
static char *
pa_arg_text(JsonbValue *v, int i, Oid typ)
{
	if (v->type == jbvBinary)
	{
		if (typ == JSONBOID || typ == JSONOID)
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		if (OidIsValid(get_element_type(typ)))
		{
			StringInfoData buf;

			initStringInfo(&buf);
			pa_append_array_literal(&buf, v);
			return buf.data;
		}
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("args[%d] is a JSON %s but parameter $%d is of type %s",
						i, JsonContainerIsArray(v->val.binary.data) ? "array" : "object",
						i + 1, format_type_be(typ))));
	}
	if (typ == JSONBOID || typ == JSONOID)
	{
		Jsonb	   *scalar = JsonbValueToJsonb(v);

		return JsonbToCString(NULL, &scalar->root, VARSIZE(scalar));
	}
	return pa_scalar_text(v);
}

void
pulse_page_bind_args(const PageQueryInfo *info, Jsonb *args, Datum *values,
					 char *nulls)
{
	for (int i = 0; i < info->nparams; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(&args->root, i);
		Oid			typ = info->paramtypes[i];
		Oid			infunc,
					ioparam;

		if (v->type == jbvNull)
		{
			values[i] = (Datum) 0;
			nulls[i] = 'n';
			continue;
		}
		getTypeInputInfo(typ, &infunc, &ioparam);
		values[i] = OidInputFunctionCall(infunc, pa_arg_text(v, i, typ), ioparam, -1);
		nulls[i] = ' ';
	}
}
