/**
 * Control characters in a spec's strings: C0 (NUL included), DEL, C1, and the Unicode bidi overrides and isolates
 * (U+202A–U+202E, U+2066–U+2069), which make a name print as something it is not. No string of a spec may hold one.
 * Pure and free of zod (workflow code may import it).
 */

export const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

/** `U+202E` for the first control character of `text`, or undefined when it has none. */
export function firstControlCharacter(text: string): string | undefined {
  const m = CONTROL_CHARACTERS.exec(text);
  return m ? `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}` : undefined;
}

export interface ControlCharacterHit {
  path: (string | number)[];
  /** e.g. `U+0000`. */
  character: string;
}

/** A node of the walk: its key and its parent, so that a path is built only for a hit (deep values stay linear). */
interface Step {
  value: unknown;
  key: string | number | undefined;
  parent: Step | undefined;
}

function pathOf(step: Step | undefined, last?: string): (string | number)[] {
  const path: (string | number)[] = last === undefined ? [] : [last];
  for (let s = step; s?.key !== undefined; s = s.parent) path.push(s.key);
  return path.reverse();
}

/**
 * Every string in `value` (object keys too) that holds a control character, with its path. Iterative, so a deeply
 * nested value cannot overflow the stack; linear in the size of the value; stops after `limit` hits.
 */
export function findControlCharacters(value: unknown, limit = 100): ControlCharacterHit[] {
  const hits: ControlCharacterHit[] = [];
  const stack: Step[] = [{ value, key: undefined, parent: undefined }];
  while (stack.length > 0 && hits.length < limit) {
    const step = stack.pop()!;
    const v = step.value;
    if (typeof v === 'string') {
      const character = firstControlCharacter(v);
      if (character) hits.push({ path: pathOf(step), character });
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], key: i, parent: step });
    } else if (typeof v === 'object' && v !== null) {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i]!;
        const character = firstControlCharacter(key);
        if (character && hits.length < limit) hits.push({ path: pathOf(step, key), character });
        stack.push({ value: child, key, parent: step });
      }
    }
  }
  return hits;
}
