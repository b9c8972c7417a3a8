#!/usr/bin/env python3
"""Generates csrc/tokenizer/unicode_tables.cc from Python's `unicodedata`.

The tokenizer must reproduce the original BERT tokenizer *as run by Python 3*,
so every character property it uses is read from the Python that runs this
script (its Unicode version is recorded in the output):

  flags      drop (NUL, U+FFFD, Cc/Cf except \\t\\n\\r), space (cleaned to ' '),
             pyspace (str.isspace: splits tokens and is stripped from vocab lines),
             punct (ASCII symbol ranges + category P*), cjk (the original's ranges),
             mn (category Mn: removed by accent stripping), cased and
             case_ignorable (for str.lower()'s Final_Sigma rule), decomposes (NFD
             differs from the character), special_lower (lower() is not 1:1).
  lower      str.lower() of the character alone, stored as a code point delta.
  ccc        canonical combining class (canonical reordering after NFD).
  nfd        full canonical decomposition of each character except Hangul
             syllables (decomposed algorithmically in C++).

Cased/Case_Ignorable are not exposed by `unicodedata`; they are read back from
how CPython's str.lower() treats U+03A3 next to the character (see
`_sigma_properties`), so they are exactly what CPython uses.

Usage: python csrc/tokenizer/gen_unicode_tables.py [OUTPUT]
"""

import sys
import unicodedata
from pathlib import Path

BLOCK = 128
MAX_CP = 0x110000

F_DROP = 1 << 0
F_SPACE = 1 << 1
F_PYSPACE = 1 << 2
F_PUNCT = 1 << 3
F_CJK = 1 << 4
F_MN = 1 << 5
F_CASED = 1 << 6
F_CASE_IGNORABLE = 1 << 7
F_DECOMPOSES = 1 << 8
F_SPECIAL_LOWER = 1 << 9

CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def _is_hangul_syllable(cp):
  return 0xAC00 <= cp <= 0xD7A3


def _sigma_properties(ch):
  """Returns (cased, case_ignorable) as CPython's lower() sees them.

  CPython lowers U+03A3 to final sigma when the nearest non-case-ignorable
  character before it is cased (and none after it is). So with c before Σ:
  "cΣ" gives ς iff c is cased and not case-ignorable; "AcΣ" gives ς iff c is
  case-ignorable (skipped, and "A" is cased) or cased.
  """
  alone = (ch + "\u03a3").lower()[-1] == "\u03c2"
  after_a = ("A" + ch + "\u03a3").lower()[-1] == "\u03c2"
  case_ignorable = after_a and not alone
  cased = alone
  return cased, case_ignorable


def properties(cp):
  ch = chr(cp)
  cat = unicodedata.category(ch)
  flags = 0
  if cp == 0 or cp == 0xFFFD or (cat in ("Cc", "Cf") and ch not in "\t\n\r"):
    flags |= F_DROP
  if ch in " \t\n\r" or cat == "Zs":
    flags |= F_SPACE
  if ch.isspace():
    flags |= F_PYSPACE
  if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126) or cat.startswith("P"):
    flags |= F_PUNCT
  if any(lo <= cp <= hi for lo, hi in CJK_RANGES):
    flags |= F_CJK
  if cat == "Mn":
    flags |= F_MN
  if 0xD800 <= cp <= 0xDFFF:
    cased, ignorable = False, False
  else:
    cased, ignorable = _sigma_properties(ch)
  if cased:
    flags |= F_CASED
  if ignorable:
    flags |= F_CASE_IGNORABLE
  lower_delta = 0
  low = ch.lower()
  if len(low) != 1:
    flags |= F_SPECIAL_LOWER
  else:
    lower_delta = ord(low) - cp
  if not _is_hangul_syllable(cp) and unicodedata.normalize("NFD", ch) != ch:
    flags |= F_DECOMPOSES
  return (flags, unicodedata.combining(ch), lower_delta)


def check_assumptions():
  """The C++ code relies on these facts; fail loudly if a Unicode version breaks one."""
  for cp in range(MAX_CP):
    ch = chr(cp)
    if 0xD800 <= cp <= 0xDFFF:
      continue
    for s in (ch.lower(), unicodedata.normalize("NFD", ch.lower())):
      if not ch.isspace() and any(x.isspace() for x in s):
        raise SystemExit(f"U+{cp:04X} normalizes to whitespace")
  for cp in range(MAX_CP):
    if unicodedata.category(chr(cp)) == "Zs" and not chr(cp).isspace():
      raise SystemExit(f"U+{cp:04X} is Zs but not str.isspace()")


def main():
  out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("unicode_tables.cc")
  check_assumptions()
  records = {}
  rec_list = []
  per_cp = []
  for cp in range(MAX_CP):
    p = properties(cp)
    if p not in records:
      records[p] = len(rec_list)
      rec_list.append(p)
    per_cp.append(records[p])
  assert len(rec_list) < 65536
  blocks = {}
  block_list = []
  stage1 = []
  for b in range(0, MAX_CP, BLOCK):
    key = tuple(per_cp[b:b + BLOCK])
    if key not in blocks:
      blocks[key] = len(block_list)
      block_list.append(key)
    stage1.append(blocks[key])

  decomp = []  # (cp, offset, length) into pool
  pool = []
  for cp in range(MAX_CP):
    if 0xD800 <= cp <= 0xDFFF or _is_hangul_syllable(cp):
      continue
    d = unicodedata.normalize("NFD", chr(cp))
    if d != chr(cp):
      decomp.append((cp, len(pool), len(d)))
      pool.extend(ord(x) for x in d)
  special_lower = []
  for cp in range(MAX_CP):
    if 0xD800 <= cp <= 0xDFFF:
      continue
    low = chr(cp).lower()
    if len(low) != 1:
      special_lower.append((cp, [ord(x) for x in low]))
  assert all(len(v) <= 3 for _, v in special_lower)

  def rows(values, per_line=16):
    vals = list(values)
    return ",\n".join("    " + ", ".join(str(v) for v in vals[i:i + per_line])
                      for i in range(0, len(vals), per_line))

  lines = []
  lines.append("// Generated by csrc/tokenizer/gen_unicode_tables.py from Python's unicodedata.")
  lines.append(f"// Unicode {unicodedata.unidata_version}. Do not edit by hand.")
  lines.append('#include "tokenizer/unicode_tables.h"')
  lines.append("")
  lines.append("namespace pybert {")
  lines.append("namespace unicode {")
  lines.append("")
  lines.append(f'const char kUnicodeVersion[] = "{unicodedata.unidata_version}";')
  lines.append(f"const CharRecord kRecords[{len(rec_list)}] = {{")
  lines.append(",\n".join(f"    {{{f}, {c}, {d}}}" for f, c, d in rec_list))
  lines.append("};")
  lines.append(f"const uint16_t kStage1[{len(stage1)}] = {{")
  lines.append(rows(stage1))
  lines.append("};")
  lines.append(f"const uint16_t kStage2[{len(block_list) * BLOCK}] = {{")
  lines.append(rows((v for blk in block_list for v in blk), 32))
  lines.append("};")
  lines.append(f"const Decomposition kDecompositions[{len(decomp)}] = {{")
  lines.append(",\n".join(f"    {{{cp}, {off}, {n}}}" for cp, off, n in decomp))
  lines.append("};")
  lines.append(f"const int kNumDecompositions = {len(decomp)};")
  lines.append(f"const char32_t kDecompositionPool[{len(pool)}] = {{")
  lines.append(rows(pool))
  lines.append("};")
  lines.append(f"const SpecialLower kSpecialLowers[{len(special_lower)}] = {{")
  lines.append(",\n".join(
      f"    {{{cp}, {len(v)}, {{{', '.join(str(x) for x in v + [0] * (3 - len(v)))}}}}}"
      for cp, v in special_lower))
  lines.append("};")
  lines.append(f"const int kNumSpecialLowers = {len(special_lower)};")
  lines.append("")
  lines.append("}  // namespace unicode")
  lines.append("}  // namespace pybert")
  lines.append("")
  out.write_text("\n".join(lines))
  print(f"wrote {out}: {len(rec_list)} records, {len(block_list)} blocks, "
        f"{len(decomp)} decompositions, Unicode {unicodedata.unidata_version}")


if __name__ == "__main__":
  main()
