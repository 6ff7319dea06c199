/*-------------------------------------------------------------------------
 *
 * fp_walk.c
 *		The raw parse tree walker of query fingerprints: writes the canonical
 *		text of a statement (see fingerprint.c for the rules) and records the
 *		edits of pulse.normalize() on the way.
 *
 * Most node types are written from a table of field descriptors
 * (FpNodeDesc): the queries' and expressions' node types below, the utility
 * statements' in fp_utility.c.  The few node types with rules of their own
 * are written by code here: constants and parameters (literals are "?"),
 * IN lists and ARRAY[] (constant lists are squashed), casts (a type-prefixed
 * literal such as DATE '2020-01-01' is normalized to $1::date), EXTRACT
 * (its field is structure even when written as a string) and SELECT (a
 * FETCH FIRST +5 ROWS count is normalized with its sign).
 *
 * The walk runs in the private memory context of one fingerprint or
 * normalize call.  The only other state is fp_descs, an index from node tag
 * to descriptor built on first use: it is static, read-only once built and
 * the same in every backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/pg_list.h"

#include "fp_int.h"

/* Node tags are below this in PostgreSQL 15 (checked when the index is built) */
#define FP_MAX_TAG 1024

static const FpNodeDesc *fp_descs[FP_MAX_TAG];
static bool fp_descs_ready = false;

/*
 * The node types of queries and expressions that have no rule of their own.
 * Fields only the analyzer fills are left out.
 */
static const FpNodeDesc fp_walk_descs[] = {
	/* statements and clauses */
	FP_DESC(InsertStmt,
			FN(InsertStmt, relation), FN(InsertStmt, cols),
			FN(InsertStmt, selectStmt), FN(InsertStmt, onConflictClause),
			FN(InsertStmt, returningList), FN(InsertStmt, withClause),
			FI(InsertStmt, override)),
	FP_DESC(DeleteStmt,
			FN(DeleteStmt, relation), FN(DeleteStmt, usingClause),
			FN(DeleteStmt, whereClause), FN(DeleteStmt, returningList),
			FN(DeleteStmt, withClause)),
	FP_DESC(UpdateStmt,
			FN(UpdateStmt, relation), FN(UpdateStmt, targetList),
			FN(UpdateStmt, whereClause), FN(UpdateStmt, fromClause),
			FN(UpdateStmt, returningList), FN(UpdateStmt, withClause)),
	FP_DESC(MergeStmt,
			FN(MergeStmt, relation), FN(MergeStmt, sourceRelation),
			FN(MergeStmt, joinCondition), FN(MergeStmt, mergeWhenClauses),
			FN(MergeStmt, withClause)),
	FP_DESC(MergeWhenClause,
			FI(MergeWhenClause, matched), FI(MergeWhenClause, commandType),
			FI(MergeWhenClause, override), FN(MergeWhenClause, condition),
			FN(MergeWhenClause, targetList), FN(MergeWhenClause, values)),
	FP_DESC(OnConflictClause,
			FI(OnConflictClause, action), FN(OnConflictClause, infer),
			FN(OnConflictClause, targetList),
			FN(OnConflictClause, whereClause)),
	FP_DESC(InferClause,
			FN(InferClause, indexElems), FN(InferClause, whereClause),
			FS(InferClause, conname)),
	FP_DESC(IndexElem,
			FS(IndexElem, name), FN(IndexElem, expr),
			FS(IndexElem, indexcolname), FN(IndexElem, collation),
			FN(IndexElem, opclass), FN(IndexElem, opclassopts),
			FI(IndexElem, ordering), FI(IndexElem, nulls_ordering)),
	FP_DESC(WithClause,
			FN(WithClause, ctes), FI(WithClause, recursive)),
	FP_DESC(CommonTableExpr,
			FS(CommonTableExpr, ctename), FN(CommonTableExpr, aliascolnames),
			FI(CommonTableExpr, ctematerialized),
			FN(CommonTableExpr, ctequery),
			FN(CommonTableExpr, search_clause),
			FN(CommonTableExpr, cycle_clause)),
	FP_DESC(CTESearchClause,
			FN(CTESearchClause, search_col_list),
			FI(CTESearchClause, search_breadth_first),
			FS(CTESearchClause, search_seq_column)),
	/* CYCLE ... SET c TO <AexprConst> DEFAULT <AexprConst>: no $n there */
	FP_DESC(CTECycleClause,
			FN(CTECycleClause, cycle_col_list),
			FS(CTECycleClause, cycle_mark_column),
			FX(CTECycleClause, cycle_mark_value),
			FX(CTECycleClause, cycle_mark_default),
			FS(CTECycleClause, cycle_path_column)),
	FP_DESC(IntoClause,
			FN(IntoClause, rel), FN(IntoClause, colNames),
			FS(IntoClause, accessMethod), FN(IntoClause, options),
			FI(IntoClause, onCommit), FS(IntoClause, tableSpaceName),
			FN(IntoClause, viewQuery), FI(IntoClause, skipData)),
	FP_DESC(LockingClause,
			FN(LockingClause, lockedRels), FI(LockingClause, strength),
			FI(LockingClause, waitPolicy)),
	FP_DESC(SortBy,
			FN(SortBy, node), FI(SortBy, sortby_dir),
			FI(SortBy, sortby_nulls), FN(SortBy, useOp)),
	FP_DESC(WindowDef,
			FS(WindowDef, name), FS(WindowDef, refname),
			FN(WindowDef, partitionClause), FN(WindowDef, orderClause),
			FI(WindowDef, frameOptions), FN(WindowDef, startOffset),
			FN(WindowDef, endOffset)),
	FP_DESC(GroupingSet,
			FI(GroupingSet, kind), FN(GroupingSet, content)),
	FP_DESC(ResTarget,
			FS(ResTarget, name), FN(ResTarget, indirection),
			FN(ResTarget, val)),
	FP_DESC(MultiAssignRef,
			FN(MultiAssignRef, source), FI(MultiAssignRef, colno),
			FI(MultiAssignRef, ncolumns)),
	FP_DESC(DefElem,
			FS(DefElem, defnamespace), FS(DefElem, defname),
			FN(DefElem, arg), FI(DefElem, defaction)),

	/* FROM items */
	FP_DESC(RangeVar,
			FS(RangeVar, catalogname), FS(RangeVar, schemaname),
			FS(RangeVar, relname), FI(RangeVar, inh),
			FI(RangeVar, relpersistence), FN(RangeVar, alias)),
	FP_DESC(Alias,
			FS(Alias, aliasname), FN(Alias, colnames)),
	FP_DESC(JoinExpr,
			FI(JoinExpr, jointype), FI(JoinExpr, isNatural),
			FN(JoinExpr, larg), FN(JoinExpr, rarg),
			FN(JoinExpr, usingClause), FN(JoinExpr, join_using_alias),
			FN(JoinExpr, quals), FN(JoinExpr, alias)),
	FP_DESC(RangeSubselect,
			FI(RangeSubselect, lateral), FN(RangeSubselect, subquery),
			FN(RangeSubselect, alias)),
	FP_DESC(RangeFunction,
			FI(RangeFunction, lateral), FI(RangeFunction, ordinality),
			FI(RangeFunction, is_rowsfrom), FN(RangeFunction, functions),
			FN(RangeFunction, alias), FN(RangeFunction, coldeflist)),
	FP_DESC(RangeTableSample,
			FN(RangeTableSample, relation), FN(RangeTableSample, method),
			FN(RangeTableSample, args), FN(RangeTableSample, repeatable)),
	FP_DESC(RangeTableFunc,
			FI(RangeTableFunc, lateral), FN(RangeTableFunc, docexpr),
			FN(RangeTableFunc, rowexpr), FN(RangeTableFunc, namespaces),
			FN(RangeTableFunc, columns), FN(RangeTableFunc, alias)),
	FP_DESC(RangeTableFuncCol,
			FS(RangeTableFuncCol, colname), FN(RangeTableFuncCol, typeName),
			FI(RangeTableFuncCol, for_ordinality),
			FI(RangeTableFuncCol, is_not_null),
			FN(RangeTableFuncCol, colexpr),
			FN(RangeTableFuncCol, coldefexpr)),
	FP_DESC(ColumnDef,
			FS(ColumnDef, colname), FN(ColumnDef, typeName),
			FS(ColumnDef, compression), FI(ColumnDef, inhcount),
			FI(ColumnDef, is_local), FI(ColumnDef, is_not_null),
			FI(ColumnDef, is_from_type), FI(ColumnDef, storage),
			FN(ColumnDef, raw_default), FI(ColumnDef, identity),
			FN(ColumnDef, identitySequence), FI(ColumnDef, generated),
			FN(ColumnDef, collClause), FN(ColumnDef, constraints),
			FN(ColumnDef, fdwoptions)),
	/* varchar(10) is another type than varchar(20) */
	FP_DESC(TypeName,
			FN(TypeName, names), FI(TypeName, typeOid), FI(TypeName, setof),
			FI(TypeName, pct_type), FV(TypeName, typmods),
			FI(TypeName, typemod), FN(TypeName, arrayBounds)),

	/* expressions */
	FP_DESC(ColumnRef,
			FN(ColumnRef, fields)),
	FP_DESC(A_Star, FP_NONE),
	FP_DESC(A_Indices,
			FI(A_Indices, is_slice), FN(A_Indices, lidx),
			FN(A_Indices, uidx)),
	FP_DESC(A_Indirection,
			FN(A_Indirection, arg), FN(A_Indirection, indirection)),
	FP_DESC(NamedArgExpr,
			FN(NamedArgExpr, arg), FS(NamedArgExpr, name)),
	FP_DESC(CollateClause,
			FN(CollateClause, arg), FN(CollateClause, collname)),
	FP_DESC(BoolExpr,
			FI(BoolExpr, boolop), FN(BoolExpr, args)),
	FP_DESC(NullTest,
			FN(NullTest, arg), FI(NullTest, nulltesttype)),
	FP_DESC(BooleanTest,
			FN(BooleanTest, arg), FI(BooleanTest, booltesttype)),
	FP_DESC(SubLink,
			FI(SubLink, subLinkType), FN(SubLink, testexpr),
			FN(SubLink, operName), FN(SubLink, subselect)),
	FP_DESC(CaseExpr,
			FN(CaseExpr, arg), FN(CaseExpr, args), FN(CaseExpr, defresult)),
	FP_DESC(CaseWhen,
			FN(CaseWhen, expr), FN(CaseWhen, result)),
	FP_DESC(RowExpr,
			FN(RowExpr, args), FI(RowExpr, row_format),
			FN(RowExpr, colnames)),
	FP_DESC(CoalesceExpr,
			FN(CoalesceExpr, args)),
	FP_DESC(MinMaxExpr,
			FI(MinMaxExpr, op), FN(MinMaxExpr, args)),
	FP_DESC(SQLValueFunction,
			FI(SQLValueFunction, op), FI(SQLValueFunction, typmod)),
	FP_DESC(XmlExpr,
			FI(XmlExpr, op), FS(XmlExpr, name), FN(XmlExpr, named_args),
			FN(XmlExpr, arg_names), FN(XmlExpr, args),
			FI(XmlExpr, xmloption)),
	FP_DESC(XmlSerialize,
			FI(XmlSerialize, xmloption), FN(XmlSerialize, expr),
			FN(XmlSerialize, typeName)),
	FP_DESC(GroupingFunc,
			FN(GroupingFunc, args)),
	FP_DESC(SetToDefault, FP_NONE),
	FP_DESC(CurrentOfExpr,
			FS(CurrentOfExpr, cursor_name), FI(CurrentOfExpr, cursor_param)),
};

static void fp_append(FpOut *o, const char *s, int len);
static void fp_int(FpOut *o, int64 v);
static void fp_str(FpOut *o, const char *s);
static void fp_desc_init(void);
static void fp_desc_walk(FpOut *o, const FpNodeDesc *d, const Node *node);
static bool fp_special(FpOut *o, const Node *node);
static int	fp_literal(FpOut *o, const A_Const *c, int *last);
static void fp_const(FpOut *o, const A_Const *n);
static int	fp_constant_kind(FpOut *o, const Node *node);
static int	fp_list_kind(FpOut *o, const List *list);
static void fp_array(FpOut *o, const List *elems, int location, char open);
static void fp_aexpr(FpOut *o, const A_Expr *n);
static void fp_typecast(FpOut *o, const TypeCast *n);
static void fp_funccall(FpOut *o, const FuncCall *n);
static void fp_select(FpOut *o, const SelectStmt *n);

#define FP_LIT(o, s)	fp_append((o), (s), sizeof(s) - 1)

/* Output primitives; all but fp_append() start with a space. */
static inline void
fp_append(FpOut *o, const char *s, int len)
{
	appendBinaryStringInfo(o->buf, s, len);
}

static void
fp_int(FpOut *o, int64 v)
{
	char		tmp[24];
	char	   *p = tmp + sizeof(tmp);
	uint64		u = v < 0 ? -(uint64) v : (uint64) v;

	do
	{
		*--p = '0' + (u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	*--p = ' ';
	fp_append(o, p, tmp + sizeof(tmp) - p);
}

/* A string, length-prefixed so that no quoting is needed; "~" for NULL. */
static void
fp_str(FpOut *o, const char *s)
{
	if (s == NULL)
		FP_LIT(o, " ~");
	else
	{
		int			len = strlen(s);

		fp_int(o, len);
		appendStringInfoChar(o->buf, ':');
		fp_append(o, s, len);
	}
}

/*
 * Build fp_descs from the two tables.  Idempotent; the tables are constant,
 * so every backend builds the same index.
 */
static void
fp_desc_init(void)
{
	for (int i = 0; i < lengthof(fp_walk_descs); i++)
	{
		Assert(fp_walk_descs[i].tag < FP_MAX_TAG);
		fp_descs[fp_walk_descs[i].tag] = &fp_walk_descs[i];
	}
	for (int i = 0; i < fp_utility_ndescs; i++)
	{
		if (fp_utility_descs[i].tag >= FP_MAX_TAG)
			elog(ERROR, "fingerprint: node tag %d out of range",
				 (int) fp_utility_descs[i].tag);
		fp_descs[fp_utility_descs[i].tag] = &fp_utility_descs[i];
	}
	fp_descs_ready = true;
}

/* Write a node by its descriptor: " {Name field... }". */
static void
fp_desc_walk(FpOut *o, const FpNodeDesc *d, const Node *node)
{
	const char *base = (const char *) node;

	fp_append(o, d->name, d->namelen);
	for (const FpField *f = d->fields; f->kind != FPF_END; f++)
	{
		const char *p = base + f->offset;

		switch ((FpFieldKind) f->kind)
		{
			case FPF_NODE:
				fp_node(o, *(Node *const *) p);
				break;
			case FPF_INT:
				if (f->size == 1)
					fp_int(o, *(const uint8 *) p);
				else if (f->size == 2)
					fp_int(o, *(const int16 *) p);
				else if (f->size == 4)
					fp_int(o, *(const int32 *) p);
				else
					fp_int(o, *(const int64 *) p);
				break;
			case FPF_STR:
				fp_str(o, *(char *const *) p);
				break;
			case FPF_NOPARAM:
				o->noparam++;
				fp_node(o, *(Node *const *) p);
				o->noparam--;
				break;
			case FPF_VERBATIM:
				o->verbatim++;
				fp_node(o, *(Node *const *) p);
				o->verbatim--;
				break;
			case FPF_END:
				break;
		}
	}
	appendStringInfoChar(o->buf, '}');
}

/*
 * Write the canonical form of a raw parse (sub)tree to o->buf.
 *
 * A node type neither described nor handled by fp_special() sets
 * o->unsupported (the caller then writes the statement by tokens).
 */
void
fp_node(FpOut *o, const Node *node)
{
	ListCell   *lc;
	NodeTag		tag;

	check_stack_depth();

	if (node == NULL)
	{
		FP_LIT(o, " <>");
		return;
	}
	if (o->unsupported)
		return;

	tag = nodeTag(node);
	switch (tag)
	{
		case T_List:
			FP_LIT(o, " (");
			foreach(lc, (const List *) node)
				fp_node(o, lfirst(lc));
			appendStringInfoChar(o->buf, ')');
			return;
		case T_IntList:
			FP_LIT(o, " (i");
			foreach(lc, (const List *) node)
				fp_int(o, lfirst_int(lc));
			appendStringInfoChar(o->buf, ')');
			return;
		case T_OidList:
			FP_LIT(o, " (o");
			foreach(lc, (const List *) node)
				fp_int(o, lfirst_oid(lc));
			appendStringInfoChar(o->buf, ')');
			return;
		case T_Integer:
			FP_LIT(o, " i");
			fp_int(o, intVal(node));
			return;
		case T_Float:
			FP_LIT(o, " f");
			fp_str(o, castNode(Float, (Node *) node)->fval);
			return;
		case T_Boolean:
			FP_LIT(o, " b");
			fp_int(o, boolVal(node));
			return;
		case T_String:
			fp_str(o, strVal(node));
			return;
		case T_BitString:
			FP_LIT(o, " x");
			fp_str(o, castNode(BitString, (Node *) node)->bsval);
			return;
		default:
			break;
	}

	if (fp_special(o, node))
		return;
	if (!fp_descs_ready)
		fp_desc_init();
	if (tag < FP_MAX_TAG && fp_descs[tag] != NULL)
		fp_desc_walk(o, fp_descs[tag], node);
	else
		o->unsupported = true;	/* the statement will be written by tokens */
}

/* The node types with rules of their own (see the file header). */
static bool
fp_special(FpOut *o, const Node *node)
{
	switch (nodeTag(node))
	{
		case T_A_Const:
			fp_const(o, (const A_Const *) node);
			return true;
		case T_ParamRef:
			/* parameters count as literals */
			FP_LIT(o, " ?");
			return true;
		case T_A_Expr:
			fp_aexpr(o, (const A_Expr *) node);
			return true;
		case T_A_ArrayExpr:
			fp_array(o, ((const A_ArrayExpr *) node)->elements,
					 ((const A_ArrayExpr *) node)->location, '[');
			return true;
		case T_TypeCast:
			fp_typecast(o, (const TypeCast *) node);
			return true;
		case T_FuncCall:
			fp_funccall(o, (const FuncCall *) node);
			return true;
		case T_SelectStmt:
			fp_select(o, (const SelectStmt *) node);
			return true;
		default:
			return false;
	}
}

/*
 * If c is a literal (see fingerprint.c), return the index of its first
 * token and set *last to its last; else return -1.
 */
static int
fp_literal(FpOut *o, const A_Const *c, int *last)
{
	int			t;

	if (o->verbatim > 0 || c->location < 0)
		return -1;				/* a type modifier, or made up: structure */
	t = fp_token_at(o->q, c->location);
	if (t < 0)
		return -1;
	*last = fp_literal_last(o->q, t, true);
	return *last >= 0 ? t : -1;
}

/* A constant: "?" when a literal (recorded for normalize), else its value. */
static void
fp_const(FpOut *o, const A_Const *n)
{
	int			last;
	int			t = fp_literal(o, n, &last);

	if (t >= 0)
	{
		FP_LIT(o, " ?");
		if (o->q->want_edits && o->noparam == 0)
			fp_add_edit(o->q, o->q->tokens[t].start, o->q->tokens[last].end,
						true, NULL);
	}
	else if (n->isnull)
		FP_LIT(o, " {CONST null}");
	else
	{
		FP_LIT(o, " {CONST");
		fp_node(o, &n->val.node);
		appendStringInfoChar(o->buf, '}');
	}
}

/*
 * Is this expression a constant for IN-list and ARRAY[] squashing: a
 * literal or a parameter, possibly under casts, or an ARRAY[] or ROW() made
 * of such constants?  Returns 0 when not, 1 when made of literals only, 2
 * when it has a parameter.
 */
static int
fp_constant_kind(FpOut *o, const Node *node)
{
	int			last;

	if (node == NULL)
		return 0;
	switch (nodeTag(node))
	{
		case T_A_Const:
			return fp_literal(o, (const A_Const *) node, &last) >= 0 ? 1 : 0;
		case T_ParamRef:
			return 2;
		case T_TypeCast:
			return fp_constant_kind(o, ((const TypeCast *) node)->arg);
		case T_A_ArrayExpr:
			return fp_list_kind(o, ((const A_ArrayExpr *) node)->elements);
		case T_RowExpr:
			return fp_list_kind(o, ((const RowExpr *) node)->args);
		default:
			return 0;
	}
}

/* fp_constant_kind() of a list: 0 unless every element is a constant */
static int
fp_list_kind(FpOut *o, const List *list)
{
	ListCell   *lc;
	int			kind = 1;

	if (list == NIL)
		return 0;
	foreach(lc, list)
	{
		int			k = fp_constant_kind(o, lfirst(lc));

		if (k == 0)
			return 0;
		kind = Max(kind, k);
	}
	return kind;
}

/*
 * Write an ARRAY[...] with these elements, or the list of an IN (...) as
 * one.  When every element is a constant, write the distinct element forms
 * only, in order of first appearance, so that the number of constants does
 * not count: IN (1, 2, 3) and IN (7) are both " {A_ArrayExpr [ ?]}".  For
 * normalize, a list of two or more literals (no parameter: PostgreSQL 18
 * squashes those only) keeps the first element of each form and a comment
 * where the others were (fp_squash_edits).  location is that of the list's
 * node; open is the character that opens the list.
 */
static void
fp_array(FpOut *o, const List *elems, int location, char open)
{
	StringInfo	outer = o->buf;
	StringInfoData scratch;
	int			kind = fp_list_kind(o, elems);
	int			n = list_length(elems);
	int		   *starts;
	int		   *ends;
	bool	   *keep;
	bool		dropped = false;
	int			i = 0;
	ListCell   *lc;

	FP_LIT(o, " {A_ArrayExpr");
	if (kind == 0)
	{
		fp_node(o, (const Node *) elems);
		appendStringInfoChar(outer, '}');
		return;
	}

	/* each element's form, one after the other in scratch */
	initStringInfo(&scratch);
	starts = palloc(sizeof(int) * n);
	ends = palloc(sizeof(int) * n);
	keep = palloc(sizeof(bool) * n);
	o->buf = &scratch;
	foreach(lc, elems)
	{
		starts[i] = scratch.len;
		fp_node(o, lfirst(lc));
		ends[i] = scratch.len;
		keep[i] = true;
		for (int j = 0; j < i && keep[i]; j++)
		{
			if (keep[j] && ends[j] - starts[j] == ends[i] - starts[i] &&
				memcmp(scratch.data + starts[j], scratch.data + starts[i],
					   ends[i] - starts[i]) == 0)
				keep[i] = false;
		}
		dropped |= !keep[i];
		i++;
	}
	o->buf = outer;

	FP_LIT(o, " [");
	for (i = 0; i < n; i++)
	{
		if (keep[i])
			fp_append(o, scratch.data + starts[i], ends[i] - starts[i]);
	}
	FP_LIT(o, "]}");

	if (o->q->want_edits && o->noparam == 0 && kind == 1 && dropped)
		fp_squash_edits(o->q, location, open, n, keep);
	pfree(scratch.data);
	pfree(starts);
	pfree(ends);
	pfree(keep);
}

/*
 * An operator expression.  x IN (constants) is written as x = ANY
 * (ARRAY[constants]) and x NOT IN (constants) as x <> ALL (ARRAY[...]):
 * the same raw tree but for the kind, and the same meaning.
 */
static void
fp_aexpr(FpOut *o, const A_Expr *n)
{
	bool		in_list = n->kind == AEXPR_IN && n->rexpr != NULL &&
		IsA(n->rexpr, List) && fp_list_kind(o, (List *) n->rexpr) > 0;
	int			kind = n->kind;

	if (in_list)
	{
		const char *op = strVal(llast(n->name));

		kind = strcmp(op, "=") == 0 ? AEXPR_OP_ANY : AEXPR_OP_ALL;
	}
	FP_LIT(o, " {A_Expr");
	fp_int(o, kind);
	fp_node(o, (const Node *) n->name);
	fp_node(o, n->lexpr);
	if (in_list)
		fp_array(o, (const List *) n->rexpr, n->location, '(');
	else
		fp_node(o, n->rexpr);
	appendStringInfoChar(o->buf, '}');
}

/*
 * A cast.  For normalize, a type-prefixed literal (DATE '2020-01-01', which
 * the grammar makes a cast with no location of its own) becomes $n::date,
 * since the prefix syntax takes a string, not a parameter.
 */
static void
fp_typecast(FpOut *o, const TypeCast *n)
{
	int			nedits = o->q->nedits;

	FP_LIT(o, " {TypeCast");
	fp_node(o, n->arg);
	fp_node(o, (const Node *) n->typeName);
	appendStringInfoChar(o->buf, '}');

	if (o->q->want_edits && n->location < 0 && o->q->nedits == nedits + 1 &&
		n->arg != NULL && IsA(n->arg, A_Const) && n->typeName != NULL &&
		n->typeName->location >= 0 &&
		n->typeName->location < o->q->edits[nedits].start)
		fp_typed_edit(o->q, &o->q->edits[nedits], n->typeName);
}

/*
 * A function call.  The field of EXTRACT(field FROM x) is a string constant
 * even when written as an identifier, and structure either way: EXTRACT('year'
 * FROM x) and EXTRACT(year FROM x) are one raw tree.
 */
static void
fp_funccall(FpOut *o, const FuncCall *n)
{
	bool		extract = n->funcformat == COERCE_SQL_SYNTAX &&
		list_length(n->funcname) == 2 &&
		strcmp(strVal(llast(n->funcname)), "extract") == 0 &&
		n->args != NIL;

	FP_LIT(o, " {FuncCall");
	fp_node(o, (const Node *) n->funcname);
	if (extract)
	{
		ListCell   *lc;

		FP_LIT(o, " (");
		foreach(lc, n->args)
		{
			if (foreach_current_index(lc) == 0)
				o->verbatim++;
			fp_node(o, lfirst(lc));
			if (foreach_current_index(lc) == 0)
				o->verbatim--;
		}
		appendStringInfoChar(o->buf, ')');
	}
	else
		fp_node(o, (const Node *) n->args);
	fp_node(o, (const Node *) n->agg_order);
	fp_node(o, n->agg_filter);
	fp_node(o, (const Node *) n->over);
	fp_int(o, n->agg_within_group);
	fp_int(o, n->agg_star);
	fp_int(o, n->agg_distinct);
	fp_int(o, n->func_variadic);
	fp_int(o, n->funcformat);
	appendStringInfoChar(o->buf, '}');
}

/*
 * A SELECT.  FETCH FIRST +5 ROWS (and OFFSET +5 ROWS) takes a sign and a
 * number, not a parameter after a '+': normalize writes (+$1), the same raw
 * tree (a unary plus over a constant) in a form the grammar takes.
 */
static void
fp_select(FpOut *o, const SelectStmt *n)
{
	static const FpNodeDesc desc =
		FP_DESC(SelectStmt,
				FN(SelectStmt, distinctClause), FN(SelectStmt, intoClause),
				FN(SelectStmt, targetList), FN(SelectStmt, fromClause),
				FN(SelectStmt, whereClause), FN(SelectStmt, groupClause),
				FI(SelectStmt, groupDistinct), FN(SelectStmt, havingClause),
				FN(SelectStmt, windowClause), FN(SelectStmt, valuesLists),
				FN(SelectStmt, sortClause), FN(SelectStmt, limitOffset),
				FN(SelectStmt, limitCount), FI(SelectStmt, limitOption),
				FN(SelectStmt, lockingClause), FN(SelectStmt, withClause),
				FI(SelectStmt, op), FI(SelectStmt, all),
				FN(SelectStmt, larg), FN(SelectStmt, rarg));
	FpQuery    *q = o->q;
	int			nedits = q->nedits;
	const Node *limits[2] = {n->limitOffset, n->limitCount};

	fp_desc_walk(o, &desc, (const Node *) n);
	if (!q->want_edits)
		return;
	for (int l = 0; l < 2; l++)
	{
		const A_Expr *plus = (const A_Expr *) limits[l];

		if (plus == NULL || !IsA(plus, A_Expr) || plus->kind != AEXPR_OP ||
			plus->lexpr != NULL || plus->location < 0 ||
			plus->rexpr == NULL || !IsA(plus->rexpr, A_Const) ||
			strcmp(strVal(llast(plus->name)), "+") != 0)
			continue;
		for (int i = nedits; i < q->nedits; i++)
		{
			FpEdit	   *e = &q->edits[i];

			if (e->param && e->start == ((const A_Const *) plus->rexpr)->location)
			{
				e->start = plus->location;
				e->prefix = "(+";
				e->text = ")";
			}
		}
	}
}
