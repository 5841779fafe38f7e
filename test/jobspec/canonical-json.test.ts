import { canonicalize } from '../../jobspec/canonical-json';

/** A double from its IEEE 754 bit pattern, as RFC 8785 Appendix B lists them. */
function double(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

describe('canonicalize (RFC 8785)', () => {
  it('serializes the §3.2.2 example', () => {
    const input = JSON.parse(
      '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}',
    );
    expect(canonicalize(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('sorts keys by UTF-16 code units (§3.2.3)', () => {
    const input = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    expect(canonicalize(input)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  it.each([
    [1e30, '1e+30'],
    [4.5, '4.5'],
    [2e-3, '0.002'],
    [0.000001, '0.000001'],
    [1e-7, '1e-7'],
    [-0, '0'],
    [1e21, '1e+21'],
    [1e20, '100000000000000000000'],
  ])('serializes the number %p as %s', (value, expected) => {
    expect(canonicalize(value)).toBe(expected);
  });

  it.each([
    ['0000000000000000', '0'],
    ['8000000000000000', '0'],
    ['0000000000000001', '5e-324'],
    ['8000000000000001', '-5e-324'],
    ['7fefffffffffffff', '1.7976931348623157e+308'],
    ['ffefffffffffffff', '-1.7976931348623157e+308'],
    ['4340000000000000', '9007199254740992'],
    ['c340000000000000', '-9007199254740992'],
    ['4430000000000000', '295147905179352830000'],
    ['44b52d02c7e14af5', '9.999999999999997e+22'],
    ['44b52d02c7e14af6', '1e+23'],
    ['44b52d02c7e14af7', '1.0000000000000001e+23'],
    ['444b1ae4d6e2ef4e', '999999999999999700000'],
    ['444b1ae4d6e2ef4f', '999999999999999900000'],
    ['444b1ae4d6e2ef50', '1e+21'],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
    ['3eb0c6f7a0b5ed8d', '0.000001'],
    ['41b3de4355555553', '333333333.3333332'],
    ['41b3de4355555554', '333333333.33333325'],
    ['41b3de4355555555', '333333333.3333333'],
    ['41b3de4355555556', '333333333.3333334'],
    ['41b3de4355555557', '333333333.33333343'],
    ['becbf647612f3696', '-0.0000033333333333333333'],
    ['43143ff3c1cb0959', '1424953923781206.2'],
  ])('serializes the Appendix B double %s as %s', (hex, expected) => {
    expect(canonicalize(double(hex))).toBe(expected);
  });

  it('writes no whitespace and nests', () => {
    expect(canonicalize({ b: [1, { d: 'x', c: [] }], a: {} })).toBe('{"a":{},"b":[1,{"c":[],"d":"x"}]}');
  });

  it('skips undefined object members, like JSON', () => {
    expect(canonicalize({ a: 1, b: undefined })).toBe('{"a":1}');
  });

  it('does not depend on key insertion order', () => {
    expect(canonicalize({ a: 1, b: { x: 1, y: 2 } })).toBe(canonicalize({ b: { y: 2, x: 1 }, a: 1 }));
  });

  it.each<[string, unknown, RegExp]>([
    ['NaN', { a: [NaN] }, /a\[0\] is NaN/],
    ['Infinity', { a: Infinity }, /a is Infinity/],
    ['-Infinity', -Infinity, /\(root\) is -Infinity/],
    ['undefined at top level', undefined, /undefined/],
    ['undefined in an array', [1, undefined], /\[1\] has type undefined/],
    ['a function', { f: () => 1 }, /f has type function/],
    ['a bigint', { n: 1n }, /n has type bigint/],
    ['a symbol', { s: Symbol('s') }, /s has type symbol/],
    ['a Date', { d: new Date(0) }, /d is a Date/],
    ['a Uint8Array', { u: new Uint8Array(1) }, /u is a Uint8Array/],
  ])('refuses %s', (_name, value, message) => {
    expect(() => canonicalize(value)).toThrow(message);
  });

  it('refuses circular structures instead of overflowing the stack', () => {
    const a: Record<string, unknown> = {};
    a.self = a;
    expect(() => canonicalize(a)).toThrow(/circular/);
  });

  it('accepts the same object twice when it is not a cycle', () => {
    const shared = { x: 1 };
    expect(canonicalize({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
  });
});
