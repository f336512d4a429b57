// Display names are shown to everyone in a channel, so what reaches others must read as what it
// is: one normal form, no invisible characters, and no guest posing as a member by look-alikes.

// Zero-width and joining characters, the soft hyphen, the combining grapheme joiner, bidi marks,
// embeddings, overrides and isolates, the word joiner and invisible operators, Hangul fillers,
// variation selectors, and the byte-order mark: [first, last] code points.
const INVISIBLE_RANGES: readonly (readonly [number, number])[] = [
  [0x00ad, 0x00ad],
  [0x034f, 0x034f],
  [0x061c, 0x061c],
  [0x115f, 0x1160],
  [0x17b4, 0x17b5],
  [0x180e, 0x180e],
  [0x200b, 0x200f],
  [0x202a, 0x202e],
  [0x2060, 0x206f],
  [0x3164, 0x3164],
  [0xfe00, 0xfe0f],
  [0xfeff, 0xfeff],
  [0xffa0, 0xffa0],
];

function isInvisible(char: string): boolean {
  const code = char.codePointAt(0)!;
  return INVISIBLE_RANGES.some(([first, last]) => code >= first && code <= last);
}

/**
 * The form a display name is stored and shown in: NFC, without invisible or bidi control
 * characters, with runs of whitespace made one space, trimmed.
 */
export function normalizeDisplayName(name: string): string {
  const visible = [...name.normalize('NFC')].filter((char) => !isInvisible(char)).join('');
  return visible.replace(/\s+/gu, ' ').trim();
}

// Letters from other scripts, and digits and signs, that pass for Latin letters.
const LOOK_ALIKES: Readonly<Record<string, string>> = {
  а: 'a',
  в: 'b',
  е: 'e',
  ё: 'e',
  к: 'k',
  м: 'm',
  н: 'h',
  о: 'o',
  р: 'p',
  с: 'c',
  т: 't',
  у: 'y',
  х: 'x',
  і: 'l',
  ї: 'l',
  ј: 'j',
  ѕ: 's',
  ԁ: 'd',
  ԛ: 'q',
  ԝ: 'w',
  ɡ: 'g',
  α: 'a',
  β: 'b',
  ε: 'e',
  η: 'n',
  ι: 'l',
  κ: 'k',
  ν: 'v',
  ο: 'o',
  ρ: 'p',
  τ: 't',
  υ: 'u',
  χ: 'x',
  '0': 'o',
  '1': 'l',
  '3': 'e',
  '4': 'a',
  '5': 's',
  '7': 't',
  '8': 'b',
  '@': 'a',
  $: 's',
  '|': 'l',
  '!': 'l',
  i: 'l',
};

/**
 * A name's look-alike key: two names with the same key read alike (`Аlice`, `alice`, `A1ice`,
 * `a l i c e`). Compatibility forms are folded, case and marks dropped, look-alike letters
 * mapped, and everything but letters and digits removed.
 */
export function displayNameSkeleton(name: string): string {
  const folded = normalizeDisplayName(name).normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase();
  let skeleton = '';
  for (const char of folded) skeleton += LOOK_ALIKES[char] ?? char;
  return skeleton
    .replace(/rn/g, 'm')
    .replace(/vv/g, 'w')
    .replace(/[^\p{L}\p{N}]/gu, '');
}
