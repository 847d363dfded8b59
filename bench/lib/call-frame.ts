/** A V8 profile's call frame (CPU profiles and sampling heap profiles share the shape). */
export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

/** `name path:line`, the path from `node_modules/` or `src/` on, for a profile summary's rows. */
export function frameLabel({ functionName, url, lineNumber }: CallFrame): string {
  // A package's own src/ folder stays under its node_modules/ path.
  const nm = url.lastIndexOf('/node_modules/');
  const where = nm >= 0 ? url.slice(nm + 1) : url.replace(/^.*\/src\//, 'src/');
  return `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
}
