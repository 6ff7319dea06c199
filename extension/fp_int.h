/*-------------------------------------------------------------------------
 *
 * fp_int.h
 *		Private declarations of the query fingerprint module, shared by
 *		fingerprint.c (SQL functions, hashing), fp_build.c (parsing, the
 *		canonical text), fp_walk.c (the raw tree walker for queries and
 *		expressions), fp_utility.c (the walker's utility statements),
 *		fp_tokens.c (scanner tokens, the token form of statements the walker
 *		does not know, the edits of normalize) and normalize.c
 *		(pulse.normalize()).  Calls go one way: fingerprint.c and normalize.c
 *		call fp_build.c, which calls fp_walk.c and fp_tokens.c.
 *
 * The public entry points are in pulse.h.  Everything here lives in the
 * private memory context of one fingerprint or normalize call.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_FP_INT_H
#define PULSE_FP_INT_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"

/* Hashed in front of every canonical form; bump when the form changes. */
#define FP_FORMAT_TAG	"pulse-fp/2"

/* One token of the query, as returned by the core scanner. */
typedef struct FpToken
{
	int			tok;			/* token code (parser/gram.h) or a char */
	int			start;			/* byte offset of the token */
	int			end;			/* byte offset just past the token */
	const char *text;			/* identifier, keyword or operator, or NULL */
} FpToken;

/*
 * One change pulse.normalize() makes to the query text, recorded by the
 * walker: bytes [start, end) are replaced by prefix, the next "$n" when
 * param, and text (each when there).  An insertion has start == end.
 */
typedef struct FpEdit
{
	int			start;
	int			end;
	bool		param;			/* write "$n" */
	const char *prefix;			/* written before "$n", or NULL */
	const char *text;			/* written after "$n" (or alone), or NULL */
} FpEdit;

/* One statement of the query. */
typedef struct FpStmt
{
	RawStmt    *raw;
	int			start;			/* byte range of its text */
	int			end;
	bool		bytree;			/* serialized from its tree, else tokens */
	int			first_edit;		/* its FpEdits: q->edits[first_edit...] */
	int			nedits;
} FpStmt;

/* Everything known about a query once parsed and scanned. */
typedef struct FpQuery
{
	const char *query;
	int			len;
	FpStmt	   *stmts;
	int			nstmts;
	FpToken    *tokens;			/* in text order */
	int			ntokens;
	int			max_param;		/* highest $n in the query, or 0 */
	bool		want_edits;		/* record FpEdits (pulse.normalize) */
	FpEdit	   *edits;
	int			nedits;
	int			maxedits;
} FpQuery;

/* State of one walk over a statement's raw tree. */
typedef struct FpOut
{
	StringInfo	buf;			/* where the canonical text goes */
	FpQuery    *q;
	int			verbatim;		/* > 0: constants are structure */
	int			noparam;		/* > 0: the grammar takes no $n here */
	bool		unsupported;	/* met a node the walker does not know */
} FpOut;

/*
 * How the walker writes a node type: its name, then each field listed, in
 * order (locations are never listed).  A node type is either listed in a
 * table of FpNodeDescs (fp_walk.c, fp_utility.c) or written by code in
 * fp_walk.c; any other node makes the walker give up on the statement.
 */
typedef enum FpFieldKind
{
	FPF_END = 0,				/* terminates the field list */
	FPF_NODE,					/* Node *, written by fp_node() */
	FPF_INT,					/* integer, bool, char or enum of size bytes */
	FPF_STR,					/* char *, written by fp_str() */
	FPF_NOPARAM,				/* Node * where the grammar takes no $n */
	FPF_VERBATIM				/* Node * whose constants are structure */
} FpFieldKind;

typedef struct FpField
{
	uint8		kind;			/* FpFieldKind */
	uint8		size;			/* FPF_INT: sizeof the field */
	uint16		offset;			/* offsetof the field */
} FpField;

#define FP_MAX_FIELDS 32

typedef struct FpNodeDesc
{
	NodeTag		tag;
	const char *name;			/* " {" and the node type's name */
	int			namelen;
	FpField		fields[FP_MAX_FIELDS];	/* up to an FPF_END */
} FpNodeDesc;

#define FP_DESC(type, ...) \
	{T_##type, " {" #type, sizeof(" {" #type) - 1, {__VA_ARGS__}}
#define FP_FIELD(kind, type, f) \
	{(kind), sizeof(((type *) 0)->f), offsetof(type, f)}
#define FP_NONE			{FPF_END, 0, 0}
#define FN(type, f)		FP_FIELD(FPF_NODE, type, f)
#define FI(type, f)		FP_FIELD(FPF_INT, type, f)
#define FS(type, f)		FP_FIELD(FPF_STR, type, f)
#define FX(type, f)		FP_FIELD(FPF_NOPARAM, type, f)
#define FV(type, f)		FP_FIELD(FPF_VERBATIM, type, f)

/* fp_build.c */
extern List *fp_parse(const char *query);
extern void fp_build(const char *query, FpQuery *q, StringInfo canon);

/* fp_walk.c */
extern void fp_node(FpOut *o, const Node *node);

/* fp_utility.c */
extern const FpNodeDesc fp_utility_descs[];
extern const int fp_utility_ndescs;

/* fp_tokens.c */
extern void fp_scan(FpQuery *q);
extern int	fp_token_at(const FpQuery *q, int location);
extern int	fp_literal_last(const FpQuery *q, int i, bool bytree);
extern void fp_tokens(const FpQuery *q, const FpStmt *st, StringInfo buf);
extern void fp_add_edit(FpQuery *q, int start, int end, bool param,
						const char *text);
extern void fp_typed_edit(FpQuery *q, FpEdit *lit, const TypeName *tn);
extern void fp_squash_edits(FpQuery *q, int location, char open, int nelems,
							const bool *keep);

/* normalize.c */
extern char *fp_normalize(const char *query);

#endif							/* PULSE_FP_INT_H */
