#!/usr/bin/env python3
"""Generates crates/josefine/src/protocol/guard/schemas.rs from kafka-protocol's source.

The guard (crates/josefine/src/protocol/guard/mod.rs) walks a response body before
kafka-protocol decodes it, so that no array count read off the wire reaches the
decoder's `Vec::with_capacity` unless the elements are really in the frame. To agree
with the decoder byte for byte, the walk follows the decoder's own code: this script
reads the `impl Decodable for X` blocks kafka-protocol generated (from Kafka's JSON
schemas), evaluates each field's version conditions for every version the message
accepts, and writes one static `Schema` per struct.

Usage:
    scripts/gen_wire_schema.py [KAFKA_PROTOCOL_SRC_MESSAGES_DIR] \
        > crates/josefine/src/protocol/guard/schemas.rs

The output is one line per field (rustfmt skips the file: it reads as a table).

Without an argument the kafka-protocol 0.18 source is looked up in ~/.cargo/registry.
Anything the parser does not recognise is a hard error: the output is either exact or
not written. Run it again whenever the kafka-protocol pin moves.
"""

import glob
import os
import re
import sys

# Response modules whose types the client decodes: every `KafkaRequest::Response` in
# crates/josefine/src/protocol/mod.rs, plus the response header.
MODULES = [
    "response_header",
    "api_versions_response",
    "metadata_response",
    "produce_response",
    "fetch_response",
    "list_offsets_response",
    "find_coordinator_response",
    "join_group_response",
    "sync_group_response",
    "heartbeat_response",
    "leave_group_response",
    "offset_commit_response",
    "offset_fetch_response",
    "list_groups_response",
    "describe_groups_response",
    "init_producer_id_response",
    "create_topics_response",
    "delete_topics_response",
    "sasl_handshake_response",
    "sasl_authenticate_response",
    "delete_records_response",
    "offset_for_leader_epoch_response",
    "describe_configs_response",
    "alter_configs_response",
    "create_partitions_response",
    "delete_groups_response",
    "incremental_alter_configs_response",
    "offset_delete_response",
    "describe_cluster_response",
    "consumer_group_heartbeat_response",
    "consumer_group_describe_response",
    "create_acls_response",
    "describe_acls_response",
    "delete_acls_response",
    "add_partitions_to_txn_response",
    "add_offsets_to_txn_response",
    "end_txn_response",
    "txn_offset_commit_response",
]

PRIMS = {
    "Int8", "Int16", "UInt16", "Int32", "Int64", "UInt32", "Float64", "Boolean", "Uuid",
    "UnsignedVarInt", "String", "CompactString", "Bytes", "CompactBytes",
}
ELEM_PRIMS = {"Int8", "Int16", "Int32", "Int64", "String", "CompactString", "Uuid"}

TOKEN = re.compile(
    r'"(?:\\.|[^"\\])*"|[A-Za-z_][A-Za-z0-9_]*|\d+|::|>=|<=|==|!=|&&|\|\||=>|->|\S'
)


def fail(msg):
    sys.stderr.write(f"gen_wire_schema: {msg}\n")
    sys.exit(1)


def find_source():
    pattern = os.path.expanduser("~/.cargo/registry/src/*/kafka-protocol-0.18.0/src/messages")
    found = sorted(glob.glob(pattern))
    if not found:
        fail(f"kafka-protocol 0.18.0 not found ({pattern}); pass its src/messages directory")
    return found[0]


def block(tokens, i):
    """tokens[i] is an opening bracket; returns the index after its match."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    stack = []
    j = i
    while j < len(tokens):
        t = tokens[j]
        if t in pairs:
            stack.append(pairs[t])
        elif t in pairs.values():
            if not stack or stack.pop() != t:
                fail(f"unbalanced {t}")
            if not stack:
                return j + 1
        j += 1
    fail("unterminated block")


def struct_fields(text):
    """Struct name -> {field name -> Rust type}."""
    out = {}
    for m in re.finditer(r"\npub struct (\w+) \{(.*?)\n\}", text, re.S):
        fields = {}
        for f in re.finditer(r"\n    pub (\w+): ([^\n]+),", m.group(2)):
            fields[f.group(1)] = f.group(2).strip()
        out[m.group(1)] = fields
    return out


def decode_bodies(text):
    """Struct name -> token list of its decode fn body."""
    out = {}
    for m in re.finditer(r"\nimpl Decodable for (\w+) \{", text):
        start = text.index("-> Result<Self> {", m.end())
        tokens = TOKEN.findall(text[start + len("-> Result<Self> "):])
        end = block(tokens, 0)
        out[m.group(1)] = tokens[1:end - 1]
    return out


def cond_fn(tokens):
    src = " ".join(tokens)
    if not re.fullmatch(r"[ version<>=!&|\d()-]+", src):
        fail(f"unexpected condition: {src}")
    src = src.replace("&&", " and ").replace("||", " or ")
    return lambda v: eval(src, {}, {"version": v})


def elem_name(rust_type, kind):
    """The struct named by a field's Rust type, for Struct / Array(Struct) reads."""
    t = rust_type.replace("super::", "")
    pats = {
        "struct": [r"(\w+)"],
        "option_struct": [r"Option<(\w+)>"],
        "array": [r"Vec<(\w+)>", r"Option<Vec<(\w+)>>"],
    }[kind]
    for p in pats:
        m = re.fullmatch(p, t)
        if m:
            return m.group(1)
    fail(f"cannot find the element struct in {rust_type} ({kind})")


def parse_type(tokens, rust_type):
    """`types::X...` up to `.decode(buf)?` -> a type tuple."""
    src = "".join(tokens)
    m = re.fullmatch(r"types::(\w+)\.decode\(buf\)\?", src)
    if m and m.group(1) in PRIMS:
        return ("prim", m.group(1))
    m = re.fullmatch(r"types::(Compact)?Array\(types::(\w+)\)\.decode\(buf\)\?", src)
    if m:
        if m.group(2) not in ELEM_PRIMS:
            fail(f"unexpected array element {src}")
        return ("array", bool(m.group(1)), ("prim", m.group(2)))
    m = re.fullmatch(r"types::(Compact)?Array\(types::Struct\{version\}\)\.decode\(buf\)\?", src)
    if m:
        return ("array", bool(m.group(1)), ("struct", elem_name(rust_type, "array")))
    if src == "types::Struct{version}.decode(buf)?":
        return ("struct", elem_name(rust_type, "struct"))
    if src == "types::OptionStruct{version}.decode(buf)?":
        return ("option_struct", elem_name(rust_type, "option_struct"))
    fail(f"unexpected decode expression: {src}")


def parse_expr(tokens, rust_type):
    """A field's value expression -> tree of ("if", cond, then, else) / ("read", ty) /
    ("none",) / ("bail",)."""
    if not tokens:
        return ("none",)
    if tokens[0] == "if":
        j = tokens.index("{")
        cond = cond_fn(tokens[1:j])
        end = block(tokens, j)
        then = parse_expr(tokens[j + 1:end - 1], rust_type)
        rest = tokens[end:]
        if not rest:
            return ("if", cond, then, ("none",))
        if rest[0] != "else":
            fail(f"expected else, got {rest[:5]}")
        rest = rest[1:]
        if rest[0] == "if":
            other = parse_expr(rest, rust_type)
        else:
            if rest[0] != "{":
                fail("expected {")
            end = block(rest, 0)
            if end != len(rest):
                fail(f"trailing tokens {rest[end:end + 5]}")
            other = parse_expr(rest[1:end - 1], rust_type)
        return ("if", cond, then, other)
    if "bail" in tokens:
        return ("bail",)
    if "decode" in tokens:
        if tokens[-1] == ";":
            tokens = tokens[:-1]
        return ("read", parse_type(tokens, rust_type))
    return ("none",)


def eval_tree(tree, v):
    kind = tree[0]
    if kind == "if":
        return eval_tree(tree[2] if tree[1](v) else tree[3], v)
    return tree


def statements(tokens):
    """Splits a body into top-level statements (lists of tokens)."""
    out, cur, i = [], [], 0
    while i < len(tokens):
        t = tokens[i]
        if t in "{([":
            end = block(tokens, i)
            cur.extend(tokens[i:end])
            i = end
            # `if ... { }` without `;` ends a statement unless `else` follows.
            if cur[0] == "if" and t == "{" and (i >= len(tokens) or tokens[i] != "else"):
                out.append(cur)
                cur = []
            continue
        cur.append(t)
        i += 1
        if t == ";":
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def parse_struct(name, body, fields_of):
    decl = fields_of.get(name)
    if decl is None:
        fail(f"no struct declaration for {name}")
    stmts = statements(body)
    first = "".join(stmts[0])
    m = re.fullmatch(
        r"ifversion<(\d+)\|\|version>(\d+)\{bail!\(\"specified version not supported by this message type\"\);\}",
        first,
    )
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
    else:
        m = re.fullmatch(
            r"ifversion!=(\d+)\{bail!\(\"specified version not supported by this message type\"\);\}",
            first,
        )
        if not m:
            fail(f"{name}: unexpected first statement {first[:80]}")
        lo = hi = int(m.group(1))
    fields, tags, flexible = [], [], None
    for st in stmts[1:]:
        if st[:2] == ["let", "num_tagged_fields"]:
            # Always flexible: the tagged fields follow without a version check.
            flexible = lambda v: True
        elif st[0] == "for" and "num_tagged_fields" in st:
            tags.extend(parse_arms(name, st, decl))
        elif st[0] == "let":
            k = 2 if st[1] == "mut" else 1
            fname = st[k]
            if st[k + 1] != "=":
                fail(f"{name}: unexpected let {st[:6]}")
            expr = st[k + 2:-1]
            if "decode" not in expr:
                continue  # a default for a tagged field, or the unknown-tags map
            fields.append((fname, parse_expr(expr, decl.get(fname, ""))))
        elif st[0] == "if" and "num_tagged_fields" in st:
            j = st.index("{")
            flexible = cond_fn(st[1:j])
            tags.extend(parse_arms(name, st, decl))
        elif st[0] == "Ok":
            break
        else:
            fail(f"{name}: unexpected statement {' '.join(st[:10])}")
    return {"lo": lo, "hi": hi, "fields": fields, "tags": tags, "flexible": flexible}


def parse_arms(name, st, decl):
    """The known tags of a tagged-fields loop: [(tag, tree)]."""
    if "match" not in st:
        return []
    mi = st.index("match")
    if st[mi + 1:mi + 3] != ["tag", "{"]:
        fail(f"{name}: unexpected match")
    end = block(st, mi + 2)
    arms = st[mi + 3:end - 1]
    out, i = [], 0
    while i < len(arms):
        if arms[i] == "_":
            break
        tag = int(arms[i])
        if arms[i + 1] != "=>" or arms[i + 2] != "{":
            fail(f"{name}: unexpected arm {arms[i:i + 4]}")
        aend = block(arms, i + 2)
        out.append((tag, parse_tag_arm(name, arms[i + 3:aend - 1], decl)))
        i = aend
    return out


def parse_tag_arm(name, arm, decl):
    """`x = EXPR;` or `if cond { x = EXPR; } else { bail!(..); }`."""
    if arm[0] == "if":
        j = arm.index("{")
        cond = cond_fn(arm[1:j])
        end = block(arm, j)
        then = parse_tag_arm(name, arm[j + 1:end - 1], decl)
        rest = arm[end:]
        if not rest or rest[0] != "else":
            fail(f"{name}: tag arm without else")
        eend = block(rest, 1)
        other = parse_tag_arm(name, rest[2:eend - 1], decl)
        return ("if", cond, then, other)
    if arm[0] == "bail":
        return ("bail",)
    if arm[1] != "=":
        fail(f"{name}: unexpected tag arm {arm[:6]}")
    return ("read", parse_type(arm[2:-1], decl.get(arm[0], "")))


def ranges(lo, hi, at):
    """Compresses version -> value into [(from, to, value)] for non-None values."""
    out = []
    for v in range(lo, hi + 1):
        val = at(v)
        if val is None:
            continue
        if out and out[-1][1] == v - 1 and out[-1][2] == val:
            out[-1] = (out[-1][0], v, val)
        else:
            out.append((v, v, val))
    return out


def rust_static(module, struct):
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", struct)
    return f"{module}__{snake}".upper()


def ty_rust(ty, module):
    kind = ty[0]
    if kind == "prim":
        return f"Ty::{ty[1]}"
    if kind == "struct":
        return f"Ty::Struct(&{rust_static(module, ty[1])})"
    if kind == "option_struct":
        return f"Ty::OptionStruct(&{rust_static(module, ty[1])})"
    if kind == "array":
        wrapper = "CompactArray" if ty[1] else "Array"
        elem = ty[2]
        if elem[0] == "prim":
            return f"Ty::{wrapper}(Elem::{elem[1]})"
        return f"Ty::{wrapper}(Elem::Struct(&{rust_static(module, elem[1])}))"
    fail(f"unknown type {ty}")


def struct_refs(ty):
    if ty[0] in ("struct", "option_struct"):
        return [ty[1]]
    if ty[0] == "array" and ty[2][0] == "struct":
        return [ty[2][1]]
    return []


def generate(src_dir):
    out = []
    out.append("// @generated by scripts/gen_wire_schema.py from kafka-protocol 0.18.0's decoders.")
    out.append("// Do not edit: run the script again when the kafka-protocol pin moves.")
    out.append("")
    out.append("use super::{Elem, Field, Schema, Tagged, Ty, WireSchema};")
    out.append("use kafka_protocol::messages as m;")
    out.append("")
    tops = []
    for module in MODULES:
        path = os.path.join(src_dir, f"{module}.rs")
        text = open(path).read()
        fields_of = struct_fields(text)
        bodies = decode_bodies(text)
        top = "".join(w.capitalize() for w in module.split("_"))
        if top not in bodies:
            fail(f"{module}: no Decodable for {top}")
        # Only structs reachable from the top-level type, in a stable order.
        order, todo = [], [top]
        parsed = {}
        while todo:
            name = todo.pop(0)
            if name in parsed:
                continue
            if name not in bodies:
                fail(f"{module}: struct {name} has no decoder here")
            parsed[name] = parse_struct(name, bodies[name], fields_of)
            order.append(name)
            p = parsed[name]
            for v in range(p["lo"], p["hi"] + 1):
                for _, tree in p["fields"] + p["tags"]:
                    r = eval_tree(tree, v)
                    if r[0] == "read":
                        todo.extend(struct_refs(r[1]))
        for name in order:
            p = parsed[name]
            lo, hi = p["lo"], p["hi"]
            flex = ranges(lo, hi, lambda v: True if p["flexible"] and p["flexible"](v) else None)
            if len(flex) > 1 or (flex and flex[0][1] != hi):
                fail(f"{name}: flexible versions are not a suffix")
            flex_from = flex[0][0] if flex else hi + 1
            out.append(f"pub(super) static {rust_static(module, name)}: Schema = Schema {{")
            out.append(f"    name: \"{name}\",")
            out.append(f"    versions: ({lo}, {hi}),")
            out.append(f"    flexible_from: {flex_from},")
            out.append("    fields: &[")
            for fname, tree in p["fields"]:
                def at(v, tree=tree):
                    r = eval_tree(tree, v)
                    if r[0] == "bail":
                        fail(f"{name}.{fname}: bail in a field")
                    return ty_rust(r[1], module) if r[0] == "read" else None
                reads = ranges(lo, hi, at)
                parts = ", ".join(f"({a}, {b}, {t})" for a, b, t in reads)
                out.append(f"        Field {{ name: \"{fname}\", reads: &[{parts}] }},")
            out.append("    ],")
            out.append("    tags: &[" if p["tags"] else "    tags: &[],")
            for tag, tree in p["tags"]:
                def at(v, tree=tree):
                    r = eval_tree(tree, v)
                    return ty_rust(r[1], module) if r[0] == "read" else None
                reads = ranges(flex_from, hi, at)
                parts = ", ".join(f"({a}, {b}, {t})" for a, b, t in reads)
                out.append(f"        Tagged {{ tag: {tag}, reads: &[{parts}] }},")
            if p["tags"]:
                out.append("    ],")
            out.append("};")
            out.append("")
        tops.append((top, rust_static(module, top)))
    for top, static in tops:
        out.append(f"impl WireSchema for m::{top} {{")
        out.append(f"    const SCHEMA: &'static Schema = &{static};")
        out.append("}")
        out.append("")
    out.append("/// Every generated top-level schema, for tests.")
    out.append("#[cfg(test)]")
    out.append("pub(super) static ALL: &[&Schema] = &[")
    for _, static in tops:
        out.append(f"    &{static},")
    out.append("];")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    src = sys.argv[1] if len(sys.argv) > 1 else find_source()
    sys.stdout.write(generate(src))
