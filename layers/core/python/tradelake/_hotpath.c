/* The capture's hot path, compiled: the common case of what the pure Python does, byte for byte.
 *
 * tradelake/hotpath.py loads this module, binds it to the Python types (``bind``) and hands its
 * functions to normalise.py, feed.py and pack.py. Each function takes only the frames, rows and
 * trades it can handle exactly; for anything else (a bad row, an escape in a string, a number
 * beyond int64, a snapshot) it returns None and the caller runs the pure-Python path, which stays
 * the reference: tests/unit/test_hotpath.py runs both on the same input and compares.
 *
 * A live frame's trades come with their JSON lines (pack.py's format), written while their
 * values are at hand: packing them later would read every trade back from memory.
 *
 * Limited API (abi3) for CPython >= 3.11, so one build serves every later CPython, and the
 * Lambda build is cross-compiled for aarch64 (DEVELOPERS.md, "The compiled hot path").
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define FIXED_SCALE 10
static const int64_t FIXED_ONE = 10000000000LL; /* 10^FIXED_SCALE, model.FIXED_ONE */

/* Bound by ``bind``: the Python objects the results are made of. */
static PyObject *Fill, *Trade;             /* model.Fill, model.Trade (tuple subclasses) */
static allocfunc fill_alloc, trade_alloc;  /* their tp_alloc, or NULL: see ``record`` */
static newfunc tuple_new;                  /* tuple.__new__ */
static PyObject *BUY, *SELL, *INCREMENTAL; /* model.BUY, model.SELL, model.INCREMENTAL */
static int64_t EARLIEST_NS, LATEST_NS;
static PyObject *s_ts_ns, *s_counts, *s_covered; /* Reconciler attribute names */

/* --- numbers ----------------------------------------------------------------------------------*/

/* A Python int as int64, saturating (the window's bounds may be 1 << 100, "unbounded"). */
static int saturated(PyObject *o, int64_t *out) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = overflow > 0 ? INT64_MAX : overflow < 0 ? INT64_MIN : (int64_t)v;
    return 0;
}

/* An exact int (not bool, not a subclass) that fits int64: 1, or 0 when it is anything else. */
static int exact_int64(PyObject *o, int64_t *out) {
    if (Py_TYPE(o) != &PyLong_Type) return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = (int64_t)v;
    return 1;
}

/* model.parse_fixed of unsigned ASCII text: digits, at most one point, a digit somewhere, at most
 * ten fractional digits once trailing zeros are gone. 0 for any other text, or one beyond int64. */
static int decimal_text(const char *s, Py_ssize_t n, int64_t *out) {
    const char *end = s + n, *point = memchr(s, '.', (size_t)n);
    const char *whole_end = point ? point : end;
    const char *frac = point ? point + 1 : end, *frac_end = end;
    if (whole_end == s && frac == frac_end) return 0; /* "", "." */
    uint64_t v = 0;
    for (const char *p = s; p < whole_end; p++) {
        unsigned d = (unsigned char)*p - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    for (const char *p = frac; p < frac_end; p++)
        if ((unsigned)((unsigned char)*p - '0') > 9) return 0; /* a sign, a second point, ... */
    while (frac_end > frac && frac_end[-1] == '0') frac_end--;
    if (frac_end - frac > FIXED_SCALE) return 0;
    if (v > (uint64_t)INT64_MAX / (uint64_t)FIXED_ONE) return 0;
    v *= (uint64_t)FIXED_ONE;
    uint64_t f = 0, unit = (uint64_t)FIXED_ONE;
    for (const char *p = frac; p < frac_end; p++) {
        unit /= 10;
        f += (uint64_t)(*p - '0') * unit;
    }
    if (v + f > (uint64_t)INT64_MAX) return 0;
    *out = (int64_t)(v + f);
    return 1;
}

/* --- JSON: the strict subset Phemex's trade frames are written in ------------------------------*/

typedef struct {
    const char *p, *end;
} Scan;

enum { DIGIT = 1, PLAIN = 2 };
static unsigned char CHARS[256]; /* DIGIT: 0-9; PLAIN: printable ASCII but '"' and '\\' */

static void init_chars(void) {
    for (int c = 0x20; c < 0x7f; c++)
        if (c != '"' && c != '\\') CHARS[c] |= PLAIN;
    for (int c = '0'; c <= '9'; c++) CHARS[c] |= DIGIT;
}

static inline int is_digit(const Scan *s) {
    return s->p < s->end && CHARS[(unsigned char)*s->p] & DIGIT;
}

/* The scanners work on a local copy of the position: through ``s`` every byte read could alias
 * it, and the compiler would store and load it at each one. */
static inline void blanks(Scan *s) {
    const char *p = s->p;
    while (p < s->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    s->p = p;
}

static inline int take(Scan *s, char c) {
    blanks(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* A string of printable ASCII without escapes: what symbols, types, sides and decimals are. */
static int plain_string(Scan *s, const char **text, Py_ssize_t *n) {
    if (!take(s, '"')) return 0;
    const char *start = s->p, *p = start, *end = s->end;
    while (p < end && CHARS[(unsigned char)*p] & PLAIN) p++;
    if (p == end || *p != '"') return 0; /* an escape, a control or non-ASCII byte */
    *text = start;
    *n = p - start;
    s->p = p + 1;
    return 1;
}

/* A JSON integer (no fraction, no exponent, no leading zero) within int64. */
static int json_int64(Scan *s, int64_t *out) {
    blanks(s);
    const char *p = s->p, *end = s->end;
    int negative = p < end && *p == '-';
    p += negative;
    const char *digits = p, *stop = end - p > 19 ? p + 19 : end;
    uint64_t v = 0; /* 19 digits never overflow it: checked against int64 once, at the end */
    for (unsigned d; p < stop && (d = (unsigned)((unsigned char)*p - '0')) <= 9; p++)
        v = v * 10 + d;
    Py_ssize_t n = p - digits;
    s->p = p;
    if (n == 0 || (n > 1 && *digits == '0')) return 0;
    if (is_digit(s) || (p < end && (*p == '.' || *p == 'e' || *p == 'E')))
        return 0; /* a 20th digit, or a float */
    if (negative) {
        if (v > (uint64_t)INT64_MAX + 1) return 0;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)v;
    }
    return 1;
}

static int skip_value(Scan *s, int depth);

/* Any JSON string, escapes checked; a byte beyond ASCII is left to the exact parser. */
static int skip_string(Scan *s) {
    if (!take(s, '"')) return 0;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p++;
        if (c == '"') return 1;
        if (c < 0x20 || c >= 0x80) return 0;
        if (c == '\\') {
            if (s->p >= s->end) return 0;
            c = (unsigned char)*s->p++;
            if (c == 'u') {
                for (int i = 0; i < 4; i++, s->p++)
                    if (s->p >= s->end || !strchr("0123456789abcdefABCDEF", *s->p) || !*s->p)
                        return 0;
            } else if (!strchr("\"\\/bfnrt", c) || !c) {
                return 0;
            }
        }
    }
    return 0;
}

static int skip_number(Scan *s) {
    if (s->p < s->end && *s->p == '-') s->p++;
    const char *digits = s->p;
    while (s->p < s->end && (unsigned)((unsigned char)*s->p - '0') <= 9) s->p++;
    Py_ssize_t n = s->p - digits;
    /* Up to 19 digits and 2 of exponent: orjson reads those as an int or a finite float; what
     * is beyond (a float from a huge int, infinity: an error) is its call. */
    if (n == 0 || (n > 1 && *digits == '0') || n > 19) return 0;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        digits = s->p;
        while (s->p < s->end && (unsigned)((unsigned char)*s->p - '0') <= 9) s->p++;
        if (s->p == digits) return 0;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        digits = s->p;
        while (s->p < s->end && (unsigned)((unsigned char)*s->p - '0') <= 9) s->p++;
        if (s->p == digits || s->p - digits > 2) return 0;
    }
    return 1;
}

static int skip_word(Scan *s, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return 0;
    s->p += n;
    return 1;
}

/* A value of a key the capture does not read (Phemex may add some): valid JSON, or 0. */
static int skip_value(Scan *s, int depth) {
    blanks(s);
    if (s->p >= s->end || depth > 32) return 0;
    switch (*s->p) {
    case '"':
        return skip_string(s);
    case '{':
        s->p++;
        if (take(s, '}')) return 1;
        do {
            if (!skip_string(s) || !take(s, ':') || !skip_value(s, depth + 1)) return 0;
        } while (take(s, ','));
        return take(s, '}');
    case '[':
        s->p++;
        if (take(s, ']')) return 1;
        do {
            if (!skip_value(s, depth + 1)) return 0;
        } while (take(s, ','));
        return take(s, ']');
    case 't':
        return skip_word(s, "true");
    case 'f':
        return skip_word(s, "false");
    case 'n':
        return skip_word(s, "null");
    default:
        return skip_number(s);
    }
}

/* One row as read, before its market's scaling. */
typedef struct {
    int64_t ts;
    PyObject *side; /* borrowed BUY or SELL */
    int64_t price, qty; /* integer rows: the wire integers; text rows: already fixed point */
} Row;

typedef struct {
    Row *rows;
    Py_ssize_t n, cap;
    Row small[16];
} Rows;

static Row *next_row(Rows *r) {
    if (r->n == r->cap) {
        Py_ssize_t cap = r->cap * 4;
        Row *grown = PyMem_Malloc((size_t)cap * sizeof(Row));
        if (grown == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memcpy(grown, r->rows, (size_t)r->n * sizeof(Row));
        if (r->rows != r->small) PyMem_Free(r->rows);
        r->rows = grown;
        r->cap = cap;
    }
    return &r->rows[r->n++];
}

static PyObject *side_of(const char *text, Py_ssize_t n) {
    if (n == 3 && memcmp(text, "Buy", 3) == 0) return BUY;
    if (n == 4 && memcmp(text, "Sell", 4) == 0) return SELL;
    return NULL;
}

/* [[ts, "Buy"|"Sell", price, qty], ...]: integers, or decimal text when ``text`` (trades_p). */
static int json_rows(Scan *s, int text, Rows *out) {
    if (!take(s, '[')) return 0;
    if (take(s, ']')) return 1;
    do {
        const char *t;
        Py_ssize_t n;
        Row *row = next_row(out);
        if (row == NULL) return -1;
        if (!take(s, '[') || !json_int64(s, &row->ts) || !take(s, ',')) return 0;
        if (!plain_string(s, &t, &n) || (row->side = side_of(t, n)) == NULL) return 0;
        for (int i = 0; i < 2; i++) {
            int64_t *value = i ? &row->qty : &row->price;
            if (!take(s, ',')) return 0;
            if (text ? !plain_string(s, &t, &n) || !decimal_text(t, n, value)
                     : !json_int64(s, value))
                return 0;
        }
        if (!take(s, ']')) return 0;
    } while (take(s, ','));
    return take(s, ']');
}

/* --- JSON lines (pack.py's format) --------------------------------------------------------*/

typedef struct {
    char *data;
    Py_ssize_t n, cap;
} Buffer;

static int reserve(Buffer *b, Py_ssize_t more) {
    if (b->n + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more) cap *= 2;
    char *grown = PyMem_Realloc(b->data, (size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = grown;
    b->cap = cap;
    return 0;
}

/* A few bytes, copied inline: a line is made of a dozen short pieces, and libc's memcpy call
 * costs more than it copies. */
static inline char *put(char *at, const char *text, size_t n) {
    for (; n >= 8; n -= 8, at += 8, text += 8) memcpy(at, text, 8);
    if (n & 4) memcpy(at, text, 4), at += 4, text += 4;
    if (n & 2) memcpy(at, text, 2), at += 2, text += 2;
    if (n & 1) *at++ = *text;
    return at;
}

#define PUT(at, literal) put((at), (literal), sizeof(literal) - 1)

static const char PAIRS[201] = "0001020304050607080910111213141516171819"
                                "2021222324252627282930313233343536373839"
                                "4041424344454647484950515253545556575859"
                                "6061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";

static const uint64_t POWERS[20] = {1ULL,
                                    10ULL,
                                    100ULL,
                                    1000ULL,
                                    10000ULL,
                                    100000ULL,
                                    1000000ULL,
                                    10000000ULL,
                                    100000000ULL,
                                    1000000000ULL,
                                    10000000000ULL,
                                    100000000000ULL,
                                    1000000000000ULL,
                                    10000000000000ULL,
                                    100000000000000ULL,
                                    1000000000000000ULL,
                                    10000000000000000ULL,
                                    100000000000000000ULL,
                                    1000000000000000000ULL,
                                    10000000000000000000ULL};

/* The decimal digits of ``v``, written in place from the last, two at a time (a line has
 * six numbers of up to 19 digits). */
static char *put_u64(char *at, uint64_t v) {
    int bits = 64 - __builtin_clzll(v | 1); /* digits: log10 from log2, then one compare */
    int t = bits * 1233 >> 12, n = t + (v >= POWERS[t]);
    n += n == 0; /* 0 has one */
    char *end = at + n, *p = end;
    while (v >= 100) {
        p -= 2;
        memcpy(p, PAIRS + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        memcpy(p - 2, PAIRS + 2 * v, 2);
    } else {
        p[-1] = (char)('0' + v);
    }
    return end;
}

static char *put_i64(char *at, int64_t v) {
    if (v < 0) {
        *at++ = '-';
        return put_u64(at, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(at, (uint64_t)v);
}

/* model.format_fixed of a positive value: the shortest exact decimal. */
static char *put_fixed(char *at, int64_t v) {
    at = put_u64(at, (uint64_t)(v / FIXED_ONE));
    uint64_t frac = (uint64_t)(v % FIXED_ONE);
    if (frac) {
        int n = FIXED_SCALE; /* the fraction's digits, its trailing zeros dropped */
        while (frac % 10 == 0) frac /= 10, n--;
        *at++ = '.';
        for (int zeros = n; zeros > 0 && frac < POWERS[zeros - 1]; zeros--) *at++ = '0';
        at = put_u64(at, frac);
    }
    return at;
}

/* Text that pack._escaped leaves as it is: printable ASCII, no quote or backslash. */
static const char *verbatim(PyObject *o, Py_ssize_t *n) {
    if (Py_TYPE(o) != &PyUnicode_Type) return NULL;
    const char *text = PyUnicode_AsUTF8AndSize(o, n);
    if (text == NULL) {
        PyErr_Clear();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < *n; i++)
        if (!(CHARS[(unsigned char)text[i]] & PLAIN)) return NULL;
    return text;
}

/* The text of one trade's line that its neighbours share. */
typedef struct {
    const char *text;
    Py_ssize_t n;
} Text;

/* The end of a line, ``"recv_ns":...,"seq":...,"source":"..."}\n``: the trades of one message
 * share it, so it is written once for them. */
typedef struct {
    int64_t recv_ns, seq;
    Text source;
    char text[128]; /* 105 at most: two int64 and a source of up to 32 */
    size_t n;
} Tail;

static int set_tail(Tail *t, int64_t recv_ns, int64_t seq, Text source) {
    if (source.n > 32) return 0;
    if (t->n && t->recv_ns == recv_ns && t->seq == seq && t->source.text == source.text &&
        t->source.n == source.n)
        return 1;
    char *at = t->text;
    at = PUT(at, "\"recv_ns\":");
    at = put_i64(at, recv_ns);
    at = PUT(at, ",\"seq\":");
    at = put_i64(at, seq);
    at = PUT(at, ",\"source\":\"");
    at = put(at, source.text, (size_t)source.n);
    at = PUT(at, "\"}\n");
    t->n = (size_t)(at - t->text);
    t->recv_ns = recv_ns, t->seq = seq, t->source = source;
    return 1;
}

/* pack._lines of one trade (symbol and side verbatim, ts_ns >= 10^6, price and qty > 0). */
static int render(Buffer *b, Text symbol, int64_t ts, Text side, int64_t price, int64_t qty,
                  int64_t k, const Tail *tail) {
    if (reserve(b, 2 * (symbol.n + side.n) + (Py_ssize_t)tail->n + 256) < 0) return -1;
    char time[20];
    size_t time_n = (size_t)(put_u64(time, (uint64_t)ts) - time);
    char *at = b->data + b->n;
    at = PUT(at, "{\"symbol\":\"");
    at = put(at, symbol.text, (size_t)symbol.n);
    at = PUT(at, "\",\"ts_ns\":");
    at = put(at, time, time_n);
    at = PUT(at, ",\"ts\":");
    at = put(at, time, time_n - 6); /* ts_ns // 10**6: ts_ns has more than six digits */
    at = PUT(at, ",\"side\":\"");
    at = put(at, side.text, (size_t)side.n);
    at = PUT(at, "\",\"price\":");
    char *price_at = at;
    at = put_fixed(at, price);
    size_t price_n = (size_t)(at - price_at);
    at = PUT(at, ",\"qty\":");
    char *qty_at = at;
    at = put_fixed(at, qty);
    size_t qty_n = (size_t)(at - qty_at);
    at = PUT(at, ",\"trade_key\":\"");
    at = put(at, symbol.text, (size_t)symbol.n);
    *at++ = ':';
    at = put(at, time, time_n);
    *at++ = ':';
    at = put(at, side.text, (size_t)side.n);
    *at++ = ':';
    at = put(at, price_at, price_n);
    *at++ = ':';
    at = put(at, qty_at, qty_n);
    *at++ = ':';
    at = put_i64(at, k);
    at = PUT(at, "\",");
    at = put(at, tail->text, tail->n);
    b->n = at - b->data;
    return 1;
}

/* --- fills and trades ------------------------------------------------------------------------*/

/* Prices and quantities repeat (a price moves by ticks, sizes are round): trades share the int
 * objects of recent values, which halves the objects a buffered trade keeps alive (ts_ns is
 * its own). Direct-mapped by value; every entry a reference held. */
#define SHARED_INTS 1024
static int64_t shared_value[SHARED_INTS];
static PyObject *shared_object[SHARED_INTS];

static PyObject *shared_int(int64_t v) {
    size_t at = (size_t)(((uint64_t)v * 0x9E3779B97F4A7C15ULL) >> 54); /* 10 bits */
    PyObject *o = shared_object[at];
    if (o == NULL || shared_value[at] != v) {
        if ((o = PyLong_FromLongLong(v)) == NULL) return NULL;
        Py_XDECREF(shared_object[at]);
        shared_object[at] = o;
        shared_value[at] = v;
    }
    Py_INCREF(o);
    return o;
}

/* A Fill or Trade made of ``n`` new references (stolen; NULL if one failed), as Python's
 * ``tuple.__new__(Trade, items)`` makes it. Before CPython 3.14 that is the subclass's tp_alloc
 * and the items (``alloc``); from 3.14 on, tuple's constructor also sets up the cached hash, so
 * it is called (``alloc`` NULL), at the cost of a plain tuple in between. */
static PyObject *record(PyObject *type, allocfunc alloc, PyObject **items, Py_ssize_t n) {
    PyObject *made = NULL, *plain = NULL, *args = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (items[i] == NULL) goto done;
    if (alloc != NULL) {
        if ((made = alloc((PyTypeObject *)type, n)) == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyTuple_SetItem(made, i, items[i]);
            items[i] = NULL;
        }
    } else {
        if ((plain = PyTuple_New(n)) == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyTuple_SetItem(plain, i, items[i]);
            items[i] = NULL;
        }
        if ((args = PyTuple_Pack(1, plain)) == NULL) goto done;
        made = tuple_new((PyTypeObject *)type, args, NULL);
    }
    /* Only ints and strings inside, so never in a cycle: the collector would untrack it at its
     * first pass anyway. Untracked now, the trades in flight cost the collector nothing (with
     * a flush's worth of them alive, collections took as long as everything else). */
    if (made != NULL) PyObject_GC_UnTrack(made);
done:
    for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(items[i]);
    Py_XDECREF(plain);
    Py_XDECREF(args);
    return made;
}

/* Scale, bound and order the rows as normalise.fills does; 0 when any row is not a good one. */
static int scale_rows(Rows *r, PyObject *factors, int64_t lo, int64_t hi, int *descending) {
    int64_t pf = 1, qf = 1;
    if (factors != Py_None) {
        if (!exact_int64(PyTuple_GetItem(factors, 0), &pf) ||
            !exact_int64(PyTuple_GetItem(factors, 1), &qf))
            return 0;
    }
    int ascending = 1, falling = 1;
    for (Py_ssize_t i = 0; i < r->n; i++) {
        Row *row = &r->rows[i];
        if (__builtin_mul_overflow(row->price, pf, &row->price) ||
            __builtin_mul_overflow(row->qty, qf, &row->qty))
            return 0;
        if (!(lo <= row->ts && row->ts <= hi && row->price > 0 && row->qty > 0)) return 0;
        if (i) {
            ascending &= row[-1].ts <= row->ts;
            falling &= row[-1].ts >= row->ts;
        }
    }
    if (!ascending && !falling) return 0; /* neither way round: list.sort's business */
    *descending = !ascending;
    return 1;
}

/* The rows oldest first as list.sort(key=ts) leaves them: a newest-first run is turned round
 * group by group, equal times keeping their order. */
static PyObject *fill_list(Rows *r, int descending) {
    PyObject *out = PyList_New(r->n);
    if (out == NULL) return NULL;
    Py_ssize_t at = 0, i = descending ? r->n : 0;
    while (at < r->n) {
        Py_ssize_t start, stop;
        if (descending) { /* the group of equal times ending at i */
            stop = i;
            start = i - 1;
            while (start > 0 && r->rows[start - 1].ts == r->rows[stop - 1].ts) start--;
            i = start;
        } else {
            start = i;
            stop = ++i;
        }
        for (Py_ssize_t j = start; j < stop; j++) {
            Row *row = &r->rows[j];
            Py_INCREF(row->side);
            PyObject *items[4] = {PyLong_FromLongLong(row->ts), row->side, shared_int(row->price),
                                  shared_int(row->qty)};
            PyObject *fill = record(Fill, fill_alloc, items, 4);
            if (fill == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SetItem(out, at++, fill);
        }
    }
    return out;
}

static void free_rows(Rows *r) {
    if (r->rows != r->small) PyMem_Free(r->rows);
}

static void init_rows(Rows *r) {
    r->rows = r->small;
    r->n = 0;
    r->cap = (Py_ssize_t)(sizeof r->small / sizeof r->small[0]);
}

/* fills(rows, factors, lo, hi) -> list[Fill] | None: normalise.fills when every row is good. */
static PyObject *hot_fills(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "fills(rows, factors, lo, hi)");
        return NULL;
    }
    PyObject *rows = args[0], *factors = args[1];
    int64_t lo, hi;
    if (saturated(args[2], &lo) || saturated(args[3], &hi)) return NULL;
    if (Py_TYPE(rows) != &PyList_Type) Py_RETURN_NONE;
    Rows r;
    init_rows(&r);
    PyObject *result = Py_None;
    Py_ssize_t n = PyList_Size(rows);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GetItem(rows, i), *side;
        Row *out = next_row(&r);
        if (out == NULL) {
            result = NULL;
            goto done;
        }
        if (Py_TYPE(row) != &PyList_Type || PyList_Size(row) != 4) goto done;
        side = PyList_GetItem(row, 1);
        if (!exact_int64(PyList_GetItem(row, 0), &out->ts) || Py_TYPE(side) != &PyUnicode_Type)
            goto done;
        Py_ssize_t len;
        const char *text = PyUnicode_AsUTF8AndSize(side, &len);
        if (text == NULL) goto clear;
        if ((out->side = side_of(text, len)) == NULL) goto done;
        for (int j = 0; j < 2; j++) {
            PyObject *v = PyList_GetItem(row, 2 + j);
            int64_t *value = j ? &out->qty : &out->price;
            if (factors == Py_None) {
                if (Py_TYPE(v) != &PyUnicode_Type) goto done;
                if ((text = PyUnicode_AsUTF8AndSize(v, &len)) == NULL) goto clear;
                if (!decimal_text(text, len, value)) goto done;
            } else if (!exact_int64(v, value)) {
                goto done;
            }
        }
    }
    int descending;
    if (scale_rows(&r, factors, lo, hi, &descending)) result = fill_list(&r, descending);
    goto done;
clear:
    PyErr_Clear(); /* text that is not UTF-8 (lone surrogates): the Python path decides */
done:
    free_rows(&r);
    if (result == Py_None) Py_INCREF(result);
    return result;
}

/* The texts of model.BUY, model.SELL and model.INCREMENTAL, as lines write them. */
static Text buy_text, sell_text, incremental_text;
static Buffer frame_lines; /* the lines of one frame's trades, reused from frame to frame */

/* One distinct fill of the newest nanosecond so far, and how many times it came. */
typedef struct {
    PyObject *side;
    int64_t price, qty;
    long count;
} Tally;

/* Identical fills in one nanosecond that one frame may hold and ``take_live`` count: more (a
 * burst nobody has seen) go the Python way. */
#define MAX_TALLY 64

/* The Reconciler's fast case (cursor.Reconciler.incremental): fills past its position and past
 * the snapshot's span, oldest first, each a new trade with its ``k``; None for any other.
 * ``*lines`` gets the trades' JSON lines. The counts of a new nanosecond are kept in a tally
 * and only the newest one becomes the reconciler's dict: the rest are never read again. */
static PyObject *take_live(PyObject *reconciler, Text symbol_text, PyObject *symbol, Rows *r,
                           PyObject *recv_obj, int64_t recv_ns, int64_t seq, PyObject **lines) {
    PyObject *ts_obj = PyObject_GetAttr(reconciler, s_ts_ns);
    PyObject *counts = ts_obj ? PyObject_GetAttr(reconciler, s_counts) : NULL;
    PyObject *covered = counts ? PyObject_GetAttr(reconciler, s_covered) : NULL;
    PyObject *trades = NULL, *seq_obj = NULL, *fresh = NULL, *result = NULL;
    int64_t ts0, newest;
    if (covered == NULL) goto done;
    if (!exact_int64(ts_obj, &ts0) || Py_TYPE(counts) != &PyDict_Type ||
        Py_TYPE(covered) != &PyTuple_Type || PyTuple_Size(covered) != 2 ||
        !exact_int64(PyTuple_GetItem(covered, 1), &newest) ||
        (r->n && !(r->rows[0].ts > newest && r->rows[0].ts >= ts0))) {
        result = Py_None; /* duplicates, or out of order: the reconciler's own judgement */
        goto done;
    }
    for (Py_ssize_t i = 0, run = 0; i < r->n; i++) {
        run = i && r->rows[i].ts == r->rows[i - 1].ts ? run + 1 : 1;
        if (run > MAX_TALLY && r->rows[i].ts > ts0) {
            result = Py_None;
            goto done;
        }
    }
    Tail tail = {0};
    set_tail(&tail, recv_ns, seq, incremental_text);
    frame_lines.n = 0;
    Tally tally[MAX_TALLY];
    int tallied = 0, moved = 0; /* moved: past the position's nanosecond */
    if ((trades = PyList_New(r->n)) == NULL || (seq_obj = PyLong_FromLongLong(seq)) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < r->n; i++) {
        Row *row = &r->rows[i];
        long k = 0;
        PyObject *price = shared_int(row->price), *qty = shared_int(row->qty);
        if (row->ts > ts0) { /* a new nanosecond: its first fill */
            ts0 = row->ts;
            tallied = 0;
            moved = 1;
        }
        if (!moved) { /* the position's nanosecond: the reconciler's counts, updated in place */
            PyObject *key = price && qty ? PyTuple_Pack(3, row->side, price, qty) : NULL;
            PyObject *seen = key ? PyDict_GetItemWithError(counts, key) : NULL;
            if (seen != NULL) k = PyLong_AsLong(seen);
            PyObject *next = key && !PyErr_Occurred() ? PyLong_FromLong(k + 1) : NULL;
            int failed = next == NULL || PyDict_SetItem(counts, key, next) < 0;
            Py_XDECREF(key);
            Py_XDECREF(next);
            if (failed) {
                Py_XDECREF(price), Py_XDECREF(qty);
                goto done;
            }
        } else {
            int j = 0;
            while (j < tallied && !(tally[j].side == row->side && tally[j].price == row->price &&
                                    tally[j].qty == row->qty))
                j++;
            if (j == tallied) tally[tallied++] = (Tally){row->side, row->price, row->qty, 0};
            k = tally[j].count++;
        }
        Py_INCREF(symbol), Py_INCREF(row->side), Py_INCREF(recv_obj), Py_INCREF(seq_obj);
        Py_INCREF(INCREMENTAL);
        PyObject *items[9] = {symbol,  PyLong_FromLongLong(row->ts), row->side, price, qty,
                              PyLong_FromLong(k), recv_obj, seq_obj, INCREMENTAL};
        PyObject *trade = record(Trade, trade_alloc, items, 9);
        if (trade == NULL) goto done;
        PyList_SetItem(trades, i, trade);
        Text side = row->side == BUY ? buy_text : sell_text;
        if (render(&frame_lines, symbol_text, row->ts, side, row->price, row->qty, k, &tail) < 0)
            goto done;
    }
    if (moved) { /* the newest nanosecond's tally becomes the reconciler's counts */
        if ((fresh = PyDict_New()) == NULL) goto done;
        for (int j = 0; j < tallied; j++) {
            PyObject *price = shared_int(tally[j].price), *qty = shared_int(tally[j].qty);
            PyObject *key = price && qty ? PyTuple_Pack(3, tally[j].side, price, qty) : NULL;
            PyObject *n = key ? PyLong_FromLong(tally[j].count) : NULL;
            int failed = n == NULL || PyDict_SetItem(fresh, key, n) < 0;
            Py_XDECREF(price), Py_XDECREF(qty), Py_XDECREF(key), Py_XDECREF(n);
            if (failed) goto done;
        }
    }
    PyObject *position = PyLong_FromLongLong(ts0);
    int failed = position == NULL || PyObject_SetAttr(reconciler, s_ts_ns, position) < 0 ||
                 (fresh != NULL && PyObject_SetAttr(reconciler, s_counts, fresh) < 0);
    Py_XDECREF(position);
    if (failed || (*lines = PyBytes_FromStringAndSize(frame_lines.data, frame_lines.n)) == NULL)
        goto done;
    result = trades;
    trades = NULL;
done:
    Py_XDECREF(ts_obj), Py_XDECREF(counts), Py_XDECREF(covered);
    Py_XDECREF(trades), Py_XDECREF(seq_obj), Py_XDECREF(fresh);
    if (result == Py_None) Py_INCREF(result);
    return result;
}

/* The str of a symbol as a frame spells it: the few a capture sees are made once. */
#define NAMES 64
static struct {
    char text[32];
    Py_ssize_t n;
    PyObject *name;
} names[NAMES];
static int names_used, names_next;

static PyObject *symbol_name(const char *text, Py_ssize_t n) {
    for (int i = 0; i < names_used; i++)
        if (names[i].n == n && memcmp(names[i].text, text, (size_t)n) == 0) {
            Py_INCREF(names[i].name);
            return names[i].name;
        }
    PyObject *name = PyUnicode_FromStringAndSize(text, n);
    if (name != NULL && n <= 32) { /* kept, in turn, in one of the NAMES places */
        int at = names_next;
        names_next = (names_next + 1) % NAMES;
        names_used += names_used < NAMES;
        Py_XDECREF(names[at].name);
        memcpy(names[at].text, text, (size_t)n);
        names[at].n = n;
        names[at].name = name;
        Py_INCREF(name);
    }
    return name;
}

/* live_frame(frame, lanes, recv_ns, max_age_ns, max_lead_ns) -> (lane, trades, lines, lag) | None
 *
 * Feed.receive of an incremental trade message for a symbol whose subscription is live
 * (``lanes``: symbol -> feed._Lane, only those), when the frame is in the plain form Phemex
 * writes, every row is good and all of it is new: (lane, trades, their JSON lines, the newest
 * one's lag in ns), and the reconciler moved past them. Anything else is None, before any
 * state changed.
 */
static PyObject *hot_live_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "live_frame(frame, lanes, recv_ns, max_age_ns, max_lead_ns)");
        return NULL;
    }
    PyObject *frame = args[0], *lanes = args[1], *recv_obj = args[2];
    int64_t recv_ns, max_age, max_lead;
    if (saturated(recv_obj, &recv_ns) || saturated(args[3], &max_age) ||
        saturated(args[4], &max_lead))
        return NULL;
    Scan s;
    Py_ssize_t size;
    if (Py_TYPE(frame) == &PyBytes_Type) {
        char *data;
        if (PyBytes_AsStringAndSize(frame, &data, &size) < 0) return NULL;
        s.p = data;
    } else if (Py_TYPE(frame) == &PyUnicode_Type) {
        if ((s.p = PyUnicode_AsUTF8AndSize(frame, &size)) == NULL) {
            PyErr_Clear(); /* lone surrogates: orjson's error to report */
            Py_RETURN_NONE;
        }
    } else {
        Py_RETURN_NONE;
    }
    s.end = s.p + size;

    Rows r;
    init_rows(&r);
    PyObject *name = NULL, *result = NULL, *trades = NULL, *lines = NULL;
    const char *symbol = NULL, *kind = NULL;
    Py_ssize_t symbol_n = 0, kind_n = 0;
    int64_t seq = 0;
    int seen_seq = 0, rows_seen = 0, text_rows = 0;
    if (!take(&s, '{')) goto none;
    do {
        const char *key;
        Py_ssize_t n;
        if (!plain_string(&s, &key, &n) || !take(&s, ':')) goto none;
        if (n == 8 && memcmp(key, "sequence", 8) == 0) {
            if (seen_seq++ || !json_int64(&s, &seq)) goto none;
        } else if (n == 6 && memcmp(key, "symbol", 6) == 0) {
            if (symbol || !plain_string(&s, &symbol, &symbol_n)) goto none;
        } else if (n == 4 && memcmp(key, "type", 4) == 0) {
            if (kind || !plain_string(&s, &kind, &kind_n)) goto none;
        } else if ((n == 6 && memcmp(key, "trades", 6) == 0) ||
                   (n == 8 && memcmp(key, "trades_p", 8) == 0)) {
            if (rows_seen++) goto none; /* twice, or both keys: a malformed frame */
            text_rows = n == 8;
            int read = json_rows(&s, text_rows, &r);
            if (read < 0) goto done;
            if (!read) goto none;
        } else if (!skip_value(&s, 0)) {
            goto none;
        }
    } while (take(&s, ','));
    if (!take(&s, '}')) goto none;
    blanks(&s);
    if (s.p != s.end || !symbol || !rows_seen || !kind || kind_n != 11 ||
        memcmp(kind, "incremental", 11) != 0)
        goto none;

    if ((name = symbol_name(symbol, symbol_n)) == NULL) goto done;
    PyObject *lane = PyDict_GetItemWithError(lanes, name); /* borrowed */
    if (lane == NULL) {
        if (PyErr_Occurred()) goto done;
        goto none; /* not ours, or not live */
    }
    /* feed._Lane: (instrument, rows_key, reconciler, stats, factors) */
    PyObject *rows_key = PyTuple_GetItem(lane, 1), *reconciler = PyTuple_GetItem(lane, 2);
    PyObject *factors = PyTuple_GetItem(lane, 4);
    if (factors == NULL) goto done;
    if ((factors == Py_None) != text_rows ||
        PyUnicode_CompareWithASCIIString(rows_key, text_rows ? "trades_p" : "trades") != 0)
        goto none; /* rows under the other market's key: a bad message, Python's to count */
    int64_t lo, hi;
    if (__builtin_sub_overflow(recv_ns, max_age, &lo) || lo < EARLIEST_NS) lo = EARLIEST_NS;
    if (__builtin_add_overflow(recv_ns, max_lead, &hi) || hi > LATEST_NS) hi = LATEST_NS;
    int descending = 0;
    if (!scale_rows(&r, factors, lo, hi, &descending) || descending)
        goto none; /* bad rows, or rows to sort: normalise.fills counts and sorts */
    trades = take_live(reconciler, (Text){symbol, symbol_n}, name, &r, recv_obj, recv_ns, seq,
                       &lines);
    if (trades == NULL) goto done;
    if (trades == Py_None) goto none;
    /* the lag of the newest trade, receipt minus exchange time (the rows are oldest first) */
    PyObject *lag = PyLong_FromLongLong(r.n ? recv_ns - r.rows[r.n - 1].ts : 0);
    if (lag != NULL) result = PyTuple_Pack(4, lane, trades, lines, lag);
    Py_XDECREF(lag);
    goto done;
none:
    result = Py_None;
    Py_INCREF(result);
done:
    free_rows(&r);
    Py_XDECREF(name);
    Py_XDECREF(trades);
    Py_XDECREF(lines);
    return result;
}

/* --- Firehose records (pack.py) ---------------------------------------------------------------*/

/* ``verbatim`` of the few strings the lines of a batch repeat (symbol, side, source),
 * remembered by object for one ``lines`` call: it holds the trades, and so the strings. */
typedef struct {
    PyObject *object;
    Text text;
} Known;

#define KNOWN 8

static int known(Known *seen, PyObject *o, Text *text) {
    for (int i = 0; i < KNOWN && seen[i].object; i++)
        if (seen[i].object == o) {
            *text = seen[i].text;
            return 1;
        }
    if ((text->text = verbatim(o, &text->n)) == NULL) return 0;
    memmove(seen + 1, seen, (KNOWN - 1) * sizeof(Known));
    seen[0] = (Known){o, *text};
    return 1;
}

/* lines(trades) -> bytes | None: every trade's pack.trade_line, when all are plain (printable
 * ASCII strings, exact ints within int64, ts_ns >= 10^6, price and qty > 0). */
static PyObject *hot_lines(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "lines(trades)");
        return NULL;
    }
    PyObject *trades = args[0];
    /* A list or tuple: ``known`` remembers strings by address, which must stay theirs. */
    if (Py_TYPE(trades) != &PyList_Type && Py_TYPE(trades) != &PyTuple_Type) Py_RETURN_NONE;
    Known seen[KNOWN];
    memset(seen, 0, sizeof seen);
    Tail tail = {0};
    Buffer b = {NULL, 0, 0};
    PyObject *result = NULL;
    Py_ssize_t n = PySequence_Size(trades);
    if (n < 0) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_GetItem(trades, i);
        if (t == NULL) goto done;
        Text symbol, side, source;
        int64_t ts, price, qty, k, recv_ns, seq;
        int plain = PyTuple_Check(t) && PyTuple_Size(t) == 9 &&
                    known(seen, PyTuple_GetItem(t, 0), &symbol) &&
                    exact_int64(PyTuple_GetItem(t, 1), &ts) &&
                    known(seen, PyTuple_GetItem(t, 2), &side) &&
                    exact_int64(PyTuple_GetItem(t, 3), &price) &&
                    exact_int64(PyTuple_GetItem(t, 4), &qty) &&
                    exact_int64(PyTuple_GetItem(t, 5), &k) &&
                    exact_int64(PyTuple_GetItem(t, 6), &recv_ns) &&
                    exact_int64(PyTuple_GetItem(t, 7), &seq) &&
                    known(seen, PyTuple_GetItem(t, 8), &source) && ts >= 1000000 &&
                    price > 0 && qty > 0 && set_tail(&tail, recv_ns, seq, source);
        Py_DECREF(t);
        if (!plain) {
            result = Py_None; /* Python's path: it writes it, or says why it cannot */
            Py_INCREF(result);
            goto done;
        }
        if (render(&b, symbol, ts, side, price, qty, k, &tail) < 0) goto done;
    }
    result = PyBytes_FromStringAndSize(b.data, b.n);
done:
    PyMem_Free(b.data);
    return result;
}

/* records(lines, max_trades, max_bytes) -> list[(bytes, int)] | None: pack.pack's records of
 * rendered lines, filled greedily; None if a line is longer than a record (or is no line). */
static PyObject *hot_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || Py_TYPE(args[0]) != &PyBytes_Type) {
        PyErr_SetString(PyExc_TypeError, "records(lines: bytes, max_trades, max_bytes)");
        return NULL;
    }
    int64_t max_trades, max_bytes;
    char *data;
    Py_ssize_t size;
    if (saturated(args[1], &max_trades) || saturated(args[2], &max_bytes) ||
        PyBytes_AsStringAndSize(args[0], &data, &size) < 0)
        return NULL;
    if (max_trades < 1 || (size && data[size - 1] != '\n')) Py_RETURN_NONE;
    PyObject *out = PyList_New(0);
    const char *start = data, *at = data, *end = data + size;
    int64_t count = 0;
    while (out != NULL && at < end) {
        const char *next = (const char *)memchr(at, '\n', (size_t)(end - at)) + 1;
        if (next - at > max_bytes) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        if (count == max_trades || next - start > max_bytes) { /* a record without this line */
            PyObject *record = Py_BuildValue("(y#L)", start, (Py_ssize_t)(at - start), count);
            if (record == NULL || PyList_Append(out, record) < 0) Py_CLEAR(out);
            Py_XDECREF(record);
            start = at;
            count = 0;
        }
        count++;
        at = next;
    }
    if (out != NULL && count) {
        PyObject *record = Py_BuildValue("(y#L)", start, (Py_ssize_t)(end - start), count);
        if (record == NULL || PyList_Append(out, record) < 0) Py_CLEAR(out);
        Py_XDECREF(record);
    }
    return out;
}

/* --- the cursor (cursor.Cursor.advance) -----------------------------------------------------*/

/* One symbol of an acknowledged batch: its trades, its newest nanosecond and that one's counts. */
typedef struct {
    PyObject *symbol;
    Py_ssize_t written;
    int64_t top;
    PyObject *counts;
} Settling;

#define MAX_SYMBOLS 256

/* settle(acknowledged) -> (written, tops) | None: Cursor.advance's one pass, backwards, over
 * trades in the order they were written (each symbol's oldest first): per symbol its count, and
 * its newest nanosecond with how many of each fill the batch holds at it (``k`` + 1 of the last).
 * None for anything else than plain trades of at most MAX_SYMBOLS symbols. */
static PyObject *hot_settle(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "settle(acknowledged)");
        return NULL;
    }
    PyObject *trades = args[0], *written = NULL, *tops = NULL, *result = NULL;
    if (Py_TYPE(trades) != &PyList_Type && Py_TYPE(trades) != &PyTuple_Type) Py_RETURN_NONE;
    Settling seen[MAX_SYMBOLS];
    int symbols = 0, plain = 1;
    Py_ssize_t n = PySequence_Size(trades);
    for (Py_ssize_t i = n - 1; i >= 0 && plain; i--) {
        PyObject *t = PySequence_GetItem(trades, i); /* held by ``trades`` as well */
        if (t == NULL) goto done;
        Py_DECREF(t);
        int64_t ts, k;
        PyObject *symbol = PyTuple_Check(t) && PyTuple_Size(t) == 9 ? PyTuple_GetItem(t, 0) : NULL;
        if (symbol == NULL || Py_TYPE(symbol) != &PyUnicode_Type ||
            !exact_int64(PyTuple_GetItem(t, 1), &ts)) {
            plain = 0;
            break;
        }
        int j = 0;
        while (j < symbols && seen[j].symbol != symbol) j++;
        if (j == symbols) { /* a new object: the same symbol in another string, or a new one */
            j = 0;
            while (j < symbols && PyUnicode_Compare(seen[j].symbol, symbol) != 0) j++;
            if (PyErr_Occurred()) goto done;
            if (j == symbols) {
                if (symbols == MAX_SYMBOLS) {
                    plain = 0;
                    break;
                }
                seen[symbols++] = (Settling){symbol, 0, ts, NULL};
            }
        }
        Settling *sym = &seen[j];
        sym->written++;
        if (ts != sym->top) continue;
        PyObject *side = PyTuple_GetItem(t, 2), *price = PyTuple_GetItem(t, 3);
        PyObject *qty = PyTuple_GetItem(t, 4);
        if (!exact_int64(PyTuple_GetItem(t, 5), &k)) {
            plain = 0;
            break;
        }
        if (sym->counts == NULL && (sym->counts = PyDict_New()) == NULL) goto done;
        PyObject *key = PyTuple_Pack(3, side, price, qty);
        PyObject *have = key ? PyDict_GetItemWithError(sym->counts, key) : NULL;
        long before = have ? PyLong_AsLong(have) : 0;
        int failed = key == NULL || PyErr_Occurred();
        if (!failed && before <= k) {
            PyObject *next = PyLong_FromLongLong(k + 1);
            failed = next == NULL || PyDict_SetItem(sym->counts, key, next) < 0;
            Py_XDECREF(next);
        }
        Py_XDECREF(key);
        if (failed) goto done;
    }
    if (!plain) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    if ((written = PyDict_New()) == NULL || (tops = PyDict_New()) == NULL) goto done;
    for (int j = 0; j < symbols; j++) {
        PyObject *count = PyLong_FromSsize_t(seen[j].written);
        PyObject *top = count ? Py_BuildValue("(LO)", seen[j].top, seen[j].counts) : NULL;
        int failed = top == NULL || PyDict_SetItem(written, seen[j].symbol, count) < 0 ||
                     PyDict_SetItem(tops, seen[j].symbol, top) < 0;
        Py_XDECREF(count);
        Py_XDECREF(top);
        if (failed) goto done;
    }
    result = PyTuple_Pack(2, written, tops);
done:
    for (int j = 0; j < symbols; j++) Py_XDECREF(seen[j].counts);
    Py_XDECREF(written);
    Py_XDECREF(tops);
    return result;
}

/* --- the module ------------------------------------------------------------------------------*/

static int text_of(PyObject *o, Text *text) {
    return (text->text = PyUnicode_AsUTF8AndSize(o, &text->n)) != NULL;
}

/* bind(Fill, Trade, BUY, SELL, INCREMENTAL, EARLIEST_NS, LATEST_NS, allocate): once, by
 * hotpath.py. ``allocate``: make Fills and Trades with their tp_alloc (CPython < 3.14). */
static PyObject *hot_bind(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "bind(Fill, Trade, BUY, SELL, INCREMENTAL, "
                                         "EARLIEST_NS, LATEST_NS, allocate)");
        return NULL;
    }
    for (int i = 0; i < 2; i++)
        if (!PyType_Check(args[i]) || !PyType_IsSubtype((PyTypeObject *)args[i], &PyTuple_Type)) {
            PyErr_SetString(PyExc_TypeError, "Fill and Trade must be tuple types");
            return NULL;
        }
    for (int i = 2; i < 5; i++)
        if (Py_TYPE(args[i]) != &PyUnicode_Type) {
            PyErr_SetString(PyExc_TypeError, "BUY, SELL and INCREMENTAL must be str");
            return NULL;
        }
    int allocate = PyObject_IsTrue(args[7]);
    if (allocate < 0 || saturated(args[5], &EARLIEST_NS) || saturated(args[6], &LATEST_NS))
        return NULL;
    PyObject **slots[5] = {&Fill, &Trade, &BUY, &SELL, &INCREMENTAL};
    for (int i = 0; i < 5; i++) {
        PyObject *old = *slots[i];
        Py_INCREF(args[i]);
        *slots[i] = args[i];
        Py_XDECREF(old);
    }
    if (!text_of(BUY, &buy_text) || !text_of(SELL, &sell_text) ||
        !text_of(INCREMENTAL, &incremental_text))
        return NULL;
    fill_alloc = allocate ? (allocfunc)PyType_GetSlot((PyTypeObject *)Fill, Py_tp_alloc) : NULL;
    trade_alloc = allocate ? (allocfunc)PyType_GetSlot((PyTypeObject *)Trade, Py_tp_alloc) : NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bind", (PyCFunction)(void (*)(void))hot_bind, METH_FASTCALL, "Bind the Python types."},
    {"fills", (PyCFunction)(void (*)(void))hot_fills, METH_FASTCALL,
     "normalise.fills of good rows, or None."},
    {"live_frame", (PyCFunction)(void (*)(void))hot_live_frame, METH_FASTCALL,
     "Feed.receive of a plain live incremental frame, or None."},
    {"lines", (PyCFunction)(void (*)(void))hot_lines, METH_FASTCALL,
     "pack.trade_line of plain trades, joined, or None."},
    {"records", (PyCFunction)(void (*)(void))hot_records, METH_FASTCALL,
     "pack.pack's records of rendered lines, or None."},
    {"settle", (PyCFunction)(void (*)(void))hot_settle, METH_FASTCALL,
     "Cursor.advance's pass over acknowledged trades, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hotpath", "The capture's hot path, compiled (see hotpath.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hotpath(void) {
    init_chars();
    s_ts_ns = PyUnicode_InternFromString("ts_ns");
    s_counts = PyUnicode_InternFromString("counts");
    s_covered = PyUnicode_InternFromString("covered");
    tuple_new = (newfunc)PyType_GetSlot(&PyTuple_Type, Py_tp_new);
    if (!s_ts_ns || !s_counts || !s_covered || !tuple_new) return NULL;
    return PyModule_Create(&module);
}
