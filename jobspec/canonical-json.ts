/**
 * RFC 8785 JSON Canonicalization Scheme (JCS): the byte-exact form that signatures and spec hashes cover.
 * ECMAScript's own number and string serialisation are exactly what JCS prescribes, so we lean on JSON.stringify
 * for leaves and only control key order, whitespace and which values are allowed.
 */
export function canonicalize(value: unknown): string {
  if (value === undefined) throw new Error('canonicalize: undefined cannot be serialized as JSON');
  return serialize(value, '', []);
}

function serialize(value: unknown, path: string, ancestors: object[]): string {
  const where = path === '' ? '(root)' : path;
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new Error(`canonicalize: ${where} is ${value}, which JSON cannot represent`);
      return JSON.stringify(value); // -0 becomes "0", 1e21 becomes "1e+21": both as JCS requires.
    case 'object':
      if (value === null) return 'null';
      return serializeContainer(value, path, ancestors);
    default:
      // undefined inside an array, functions, symbols, bigint: refuse instead of silently dropping or nulling,
      // since a signature over something other than what the caller meant is worse than an error.
      throw new Error(`canonicalize: ${where} has type ${typeof value}, which JSON cannot represent`);
  }
}

function serializeContainer(value: object, path: string, ancestors: object[]): string {
  const where = path === '' ? '(root)' : path;
  if (ancestors.includes(value)) throw new Error(`canonicalize: ${where} is a circular reference`);
  const inner = [...ancestors, value];
  if (Array.isArray(value)) {
    return `[${value.map((item: unknown, i) => serialize(item, `${path}[${i}]`, inner)).join(',')}]`;
  }
  // The tag check works across realms (the Temporal workflow sandbox has its own Object.prototype) and still
  // rejects Dates, Maps, typed arrays and the like, whose JSON form would be surprising.
  const tag = Object.prototype.toString.call(value);
  if (tag !== '[object Object]') throw new Error(`canonicalize: ${where} is a ${tag.slice(8, -1)}, not a plain object`);
  const record = value as Record<string, unknown>;
  // Default sort compares UTF-16 code units, which is exactly the JCS key order.
  const members = Object.keys(record)
    .sort()
    .filter((key) => record[key] !== undefined)
    .map((key) => `${JSON.stringify(key)}:${serialize(record[key], path === '' ? key : `${path}.${key}`, inner)}`);
  return `{${members.join(',')}}`;
}
