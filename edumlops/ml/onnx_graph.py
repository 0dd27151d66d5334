"""What serving reads off a model's ONNX graph without the `onnx` package: the categories each
one-hot encoder learnt (`OneHotEncoder` nodes' `cats_strings`), by walking the protobuf wire
format of the few messages on the way (ModelProto.graph → GraphProto.node → NodeProto.input,
op_type, attribute → AttributeProto.name, strings). Every other field is skipped by its length.

Why: `import onnx` costs about a second at the first load of a model (in each web worker, and on
the way to an edge agent's first answer), and `onnx` is absent from the slim edge install. This
reader gives the same answer as walking the graph with `onnx` does (the tests compare them) in a
few milliseconds, with the standard library only.
"""

from __future__ import annotations

from collections.abc import Iterator

# field numbers, from onnx.proto
MODEL_GRAPH = 7
GRAPH_NODE = 1
NODE_INPUT, NODE_OP_TYPE, NODE_ATTRIBUTE = 1, 4, 5
ATTRIBUTE_NAME, ATTRIBUTE_STRINGS = 1, 9

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a protobuf message of the expected shape."""


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise WireError("a varint runs past the end")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(field number, bytes) of each length-delimited field of one message (strings and
    embedded messages); numbers are skipped."""
    at, end = 0, len(data)
    while at < end:
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            _, at = _varint(data, at)
        elif wire == FIXED64:
            at += 8
        elif wire == FIXED32:
            at += 4
        elif wire == LENGTH:
            size, at = _varint(data, at)
            if at + size > end:
                raise WireError("a field runs past the end")
            yield number, data[at : at + size]
            at += size
        else:  # groups (3, 4) are not used by onnx.proto
            raise WireError(f"unexpected wire type {wire}")
    if at != end:
        raise WireError("a fixed-size field runs past the end")


def _first(data: memoryview, number: int) -> bytes | None:
    for n, value in _fields(data):
        if n == number:
            return bytes(value)
    return None


def _texts(data: memoryview, number: int) -> list[bytes]:
    return [bytes(value) for n, value in _fields(data) if n == number]


def onehot_categories(model_bytes: bytes, inputs: dict[str, str]) -> dict[str, frozenset[str]]:
    """The categories each string input's one-hot encoder learnt (the top-level graph's
    `OneHotEncoder` nodes whose first input is one of `inputs`); {} when the bytes cannot be
    read (ONNX Runtime loaded them, so this only loses the hint)."""
    try:
        return _onehot(memoryview(model_bytes), inputs)
    except (WireError, UnicodeDecodeError):
        return {}


def _onehot(model: memoryview, inputs: dict[str, str]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for number, graph in _fields(model):
        if number != MODEL_GRAPH:
            continue
        for n, node in _fields(graph):
            if n != GRAPH_NODE:
                continue
            op_type, first_input, strings = b"", None, None
            for field, value in _fields(node):
                if field == NODE_OP_TYPE:
                    op_type = bytes(value)
                elif field == NODE_INPUT and first_input is None:
                    first_input = bytes(value).decode()
                elif field == NODE_ATTRIBUTE:
                    if op_type and op_type != b"OneHotEncoder":
                        break  # op_type comes first: a tree's big attributes are not read
                    if _first(value, ATTRIBUTE_NAME) == b"cats_strings":
                        strings = _texts(value, ATTRIBUTE_STRINGS)
            if op_type == b"OneHotEncoder" and first_input in inputs and strings is not None:
                out[first_input] = frozenset(s.decode() for s in strings)
    return out
