"""sse.py: the parsing of one server-sent event block (WHATWG HTML 9.2), shared by proxy/test/live.py and
live_checker.py: the block's fields as a dict (`data` lines joined by newlines, None when there is none; the last
comment line's text under `comment`)."""


def parse_block(block):
    fields = {"data": []}
    for line in block.split("\n"):
        if line.startswith(":"):
            fields["comment"] = line[1:].strip()
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            fields["data"].append(value)
        else:
            fields[name] = value
    fields["data"] = "\n".join(fields["data"]) if fields["data"] else None
    return fields
