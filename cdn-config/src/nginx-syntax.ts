/** One line or block of an nginx config, as built by the helpers below. */
export type NginxNode =
  | { readonly kind: 'directive'; readonly name: string; readonly args: readonly string[] }
  | {
      readonly kind: 'block';
      readonly name: string;
      readonly args: readonly string[];
      readonly children: readonly NginxNode[];
    }
  | { readonly kind: 'comment'; readonly text: string }
  | { readonly kind: 'blank' };

// A bare nginx token may not contain whitespace, quotes, ';', '{', '}' or '#': any of them would
// end the token or start a comment, so a value holding one must come through `quote()`.
const BARE_TOKEN = /^[^\s"';{}#]+$/;
const QUOTED_TOKEN = /^"(?:[^"\\\n]|\\.)*"$/;
const COMMENT_WIDTH = 96;
const INDENT = '    ';

/** Wraps a value in double quotes, escaping the characters nginx treats specially inside them. */
export function quote(value: string): string {
  if (/[\n\r]/.test(value)) throw new TypeError(`nginx values cannot hold line breaks: ${value}`);
  return `"${value.replace(/[\\"]/g, (character) => `\\${character}`)}"`;
}

function checkArgs(name: string, args: readonly string[]): readonly string[] {
  for (const arg of args) {
    if (!BARE_TOKEN.test(arg) && !QUOTED_TOKEN.test(arg)) {
      throw new TypeError(`nginx ${name}: argument needs quote(): ${arg}`);
    }
  }
  return args;
}

/** A simple directive: `name arg1 arg2;`. */
export function directive(name: string, ...args: string[]): NginxNode {
  return { kind: 'directive', name, args: checkArgs(name, args) };
}

/** A block directive: `name args { children }`. */
export function block(name: string, args: readonly string[], children: NginxNode[]): NginxNode {
  return { kind: 'block', name, args: checkArgs(name, args), children };
}

/** A comment, wrapped to the config's line width when rendered. */
export function comment(text: string): NginxNode {
  return { kind: 'comment', text };
}

/** An empty line between groups of directives. */
export const blank: NginxNode = { kind: 'blank' };

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

function renderNode(node: NginxNode, depth: number): string[] {
  const indent = INDENT.repeat(depth);
  switch (node.kind) {
    case 'blank':
      return [''];
    case 'comment':
      return wrap(node.text, COMMENT_WIDTH - indent.length).map((line) => `${indent}# ${line}`);
    case 'directive':
      return [`${indent}${[node.name, ...node.args].join(' ')};`];
    case 'block':
      return [
        `${indent}${[node.name, ...node.args].join(' ')} {`,
        ...node.children.flatMap((child) => renderNode(child, depth + 1)),
        `${indent}}`,
      ];
  }
}

/** Renders a list of top-level nodes as the text of an nginx config file. */
export function renderNginx(nodes: readonly NginxNode[]): string {
  return `${nodes.flatMap((node) => renderNode(node, 0)).join('\n')}\n`;
}
