using System.Globalization;
using System.Text;

namespace NativeVlm.Text;

/// <summary>
/// The regular expressions of tokenizer.json pre-tokenizers (Qwen's and GPT-4's Split patterns, GPT-2's
/// ByteLevel pattern), matched over Unicode code points with Oniguruma's semantics, which is what
/// Hugging Face's Rust tokenizers use. .NET's Regex classifies UTF-16 code units, so to it an astral
/// letter or digit (𠮷, 𝐀, 𝟎) is two surrogates that are neither.
/// The subset: literals, escapes, classes with ranges and \p{..} categories, <c>.</c>, groups
/// (<c>(..)</c>, <c>(?:..)</c>, <c>(?i:..)</c> over ASCII letters), lookahead, alternation (leftmost
/// first), greedy and lazy quantifiers; a backtracking machine over a compiled program. Anything else is
/// a <see cref="FormatException"/> naming the construct and its offset.
/// </summary>
internal sealed class CodePointRegex
{
    private enum Op
    {
        /// <summary>Consume one code point of <see cref="Instruction.Set"/>.</summary>
        Char,
        /// <summary>Try <see cref="Instruction.A"/>, on failure <see cref="Instruction.B"/>.</summary>
        Split,
        Jump,
        /// <summary>Run the body at the next instruction to its Match, then continue at B if it matched (or not, negated).</summary>
        LookAhead,
        Match,
    }

    private struct Instruction
    {
        public Op Op;
        public int A;
        public int B;
        public CodePointSet? Set;
        public bool Negated;
    }

    private readonly Instruction[] _program;

    public CodePointRegex(string pattern)
    {
        Node root = new Parser(pattern).ParseWhole();
        if (root.Nullable)
        {
            throw new FormatException($"regex /{pattern}/ can match the empty string, which is not supported");
        }
        var compiler = new Compiler(pattern);
        compiler.Emit(root);
        compiler.Add(new Instruction { Op = Op.Match });
        _program = [.. compiler.Program];
    }

    /// <summary>
    /// The non-overlapping leftmost matches in <paramref name="text"/> as UTF-16 (start, length), in order,
    /// each search starting where the previous match ended (Oniguruma's find_iter; no match is empty).
    /// </summary>
    public List<(int Start, int Length)> Matches(string text)
    {
        var codePoints = new List<int>(text.Length);
        var categories = new List<UnicodeCategory>(text.Length);
        var offsets = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length;)
        {
            Rune rune = Rune.GetRuneAt(text, i);
            codePoints.Add(rune.Value);
            categories.Add(Rune.GetUnicodeCategory(rune));
            offsets.Add(i);
            i += rune.Utf16SequenceLength;
        }
        offsets.Add(text.Length);

        var matches = new List<(int, int)>();
        var backtrack = new Stack<(int Pc, int Position)>();
        int[] points = [.. codePoints];
        UnicodeCategory[] pointCategories = [.. categories];
        for (int start = 0; start < points.Length;)
        {
            int end = Run(0, start, points, pointCategories, backtrack);
            if (end < 0)
            {
                start++;
                continue;
            }
            matches.Add((offsets[start], offsets[end] - offsets[start]));
            start = end;
        }
        return matches;
    }

    /// <summary>The end of the first match (in program order) from <paramref name="position"/>, or -1.</summary>
    private int Run(int pc, int position, int[] points, UnicodeCategory[] categories, Stack<(int Pc, int Position)> backtrack)
    {
        int baseline = backtrack.Count;
        while (true)
        {
            Instruction instruction = _program[pc];
            bool failed = false;
            switch (instruction.Op)
            {
                case Op.Char:
                    if (position < points.Length && instruction.Set!.Contains(points[position], categories[position]))
                    {
                        position++;
                        pc++;
                    }
                    else
                    {
                        failed = true;
                    }
                    break;
                case Op.Split:
                    backtrack.Push((instruction.B, position));
                    pc = instruction.A;
                    break;
                case Op.Jump:
                    pc = instruction.A;
                    break;
                case Op.LookAhead:
                    bool bodyMatched = Run(pc + 1, position, points, categories, backtrack) >= 0;
                    if (bodyMatched != instruction.Negated)
                    {
                        pc = instruction.B;
                    }
                    else
                    {
                        failed = true;
                    }
                    break;
                case Op.Match:
                    while (backtrack.Count > baseline)
                    {
                        backtrack.Pop();
                    }
                    return position;
            }
            if (failed)
            {
                if (backtrack.Count == baseline)
                {
                    return -1;
                }
                (pc, position) = backtrack.Pop();
            }
        }
    }

    private abstract record Node
    {
        public abstract bool Nullable { get; }
    }

    private sealed record CharNode(CodePointSet Set) : Node
    {
        public override bool Nullable => false;
    }

    private sealed record SequenceNode(List<Node> Items) : Node
    {
        public override bool Nullable => Items.All(item => item.Nullable);
    }

    private sealed record AlternationNode(List<Node> Options) : Node
    {
        public override bool Nullable => Options.Any(option => option.Nullable);
    }

    /// <summary><see cref="Max"/> is -1 for unbounded.</summary>
    private sealed record RepeatNode(Node Item, int Min, int Max, bool Greedy) : Node
    {
        public override bool Nullable => Min == 0 || Item.Nullable;
    }

    private sealed record LookAheadNode(Node Body, bool Negated) : Node
    {
        public override bool Nullable => true;
    }

    private sealed class Compiler(string pattern)
    {
        public List<Instruction> Program { get; } = [];

        public int Add(Instruction instruction)
        {
            Program.Add(instruction);
            return Program.Count - 1;
        }

        private int Here => Program.Count;

        private void PatchB(int at, int target)
        {
            Instruction instruction = Program[at];
            instruction.B = target;
            Program[at] = instruction;
        }

        private void PatchA(int at, int target)
        {
            Instruction instruction = Program[at];
            instruction.A = target;
            Program[at] = instruction;
        }

        /// <summary>A split that prefers the next instruction (greedy) or the exit patched in later (lazy).</summary>
        private int AddSplit(bool greedy) => Add(new Instruction { Op = Op.Split, A = greedy ? Here + 1 : -1, B = greedy ? -1 : Here + 1 });

        private void PatchExit(int split, bool greedy, int exit)
        {
            if (greedy)
            {
                PatchB(split, exit);
            }
            else
            {
                PatchA(split, exit);
            }
        }

        public void Emit(Node node)
        {
            switch (node)
            {
                case CharNode c:
                    Add(new Instruction { Op = Op.Char, Set = c.Set });
                    break;
                case SequenceNode s:
                    s.Items.ForEach(Emit);
                    break;
                case AlternationNode alternation:
                    var jumpsToEnd = new List<int>();
                    for (int i = 0; i < alternation.Options.Count - 1; i++)
                    {
                        int split = Add(new Instruction { Op = Op.Split, A = Here + 1 });
                        Emit(alternation.Options[i]);
                        jumpsToEnd.Add(Add(new Instruction { Op = Op.Jump }));
                        PatchB(split, Here);
                    }
                    Emit(alternation.Options[^1]);
                    jumpsToEnd.ForEach(jump => PatchA(jump, Here));
                    break;
                case RepeatNode r:
                    EmitRepeat(r);
                    break;
                case LookAheadNode look:
                    int lookAhead = Add(new Instruction { Op = Op.LookAhead, Negated = look.Negated });
                    Emit(look.Body);
                    Add(new Instruction { Op = Op.Match });
                    PatchB(lookAhead, Here);
                    break;
            }
        }

        private void EmitRepeat(RepeatNode r)
        {
            for (int i = 0; i < r.Min; i++)
            {
                Emit(r.Item);
            }
            if (r.Max < 0)
            {
                if (r.Item.Nullable)
                {
                    throw new FormatException($"regex /{pattern}/: an unbounded repeat of something that can match the empty string is not supported");
                }
                int loop = AddSplit(r.Greedy);
                Emit(r.Item);
                Add(new Instruction { Op = Op.Jump, A = loop });
                PatchExit(loop, r.Greedy, Here);
                return;
            }
            var splits = new List<int>();
            for (int i = r.Min; i < r.Max; i++)
            {
                splits.Add(AddSplit(r.Greedy));
                Emit(r.Item);
            }
            splits.ForEach(split => PatchExit(split, r.Greedy, Here));
        }
    }

    private sealed class Parser(string pattern)
    {
        private int _at;
        private bool _ignoreCase;

        public Node ParseWhole()
        {
            Node node = ParseAlternation();
            if (_at < pattern.Length)
            {
                throw Unsupported($"'{pattern[_at]}'");
            }
            return node;
        }

        private FormatException Unsupported(string what) =>
            new($"regex /{pattern}/: {what} at offset {_at} is not supported");

        private bool AtEnd => _at >= pattern.Length;

        private char Peek => pattern[_at];

        private bool TryTake(char c)
        {
            if (!AtEnd && Peek == c)
            {
                _at++;
                return true;
            }
            return false;
        }

        private bool TryTake(string s)
        {
            if (pattern.AsSpan(_at).StartsWith(s, StringComparison.Ordinal))
            {
                _at += s.Length;
                return true;
            }
            return false;
        }

        private void Expect(char c)
        {
            if (!TryTake(c))
            {
                throw Unsupported(AtEnd ? $"the end of the pattern (expected '{c}')" : $"'{Peek}' (expected '{c}')");
            }
        }

        private Node ParseAlternation()
        {
            var options = new List<Node> { ParseSequence() };
            while (TryTake('|'))
            {
                options.Add(ParseSequence());
            }
            return options.Count == 1 ? options[0] : new AlternationNode(options);
        }

        private Node ParseSequence()
        {
            var items = new List<Node>();
            while (!AtEnd && Peek != '|' && Peek != ')')
            {
                items.Add(ParseQuantified(ParseAtom()));
            }
            return items.Count == 1 ? items[0] : new SequenceNode(items);
        }

        private Node ParseQuantified(Node atom)
        {
            int min, max;
            if (TryTake('*'))
            {
                (min, max) = (0, -1);
            }
            else if (TryTake('+'))
            {
                (min, max) = (1, -1);
            }
            else if (TryTake('?'))
            {
                (min, max) = (0, 1);
            }
            else if (!AtEnd && Peek == '{')
            {
                (min, max) = ParseInterval();
            }
            else
            {
                return atom;
            }
            bool greedy = !TryTake('?');
            if (!AtEnd && (Peek == '+' || Peek == '*' || Peek == '{'))
            {
                throw Unsupported("a possessive or stacked quantifier");
            }
            return new RepeatNode(atom, min, max, greedy);
        }

        private (int Min, int Max) ParseInterval()
        {
            int open = _at;
            Expect('{');
            int? min = ParseNumber();
            int? max = min;
            if (TryTake(','))
            {
                max = ParseNumber();
                if (max is null && min is not null)
                {
                    Expect('}');
                    return (min.Value, -1);
                }
            }
            if (min is null || max is null || max < min || !TryTake('}'))
            {
                _at = open;
                throw Unsupported("an interval that is not {n}, {n,} or {n,m}");
            }
            return (min.Value, max.Value);
        }

        private int? ParseNumber()
        {
            int start = _at;
            while (!AtEnd && char.IsAsciiDigit(Peek))
            {
                _at++;
            }
            return _at > start ? int.Parse(pattern.AsSpan(start, _at - start), CultureInfo.InvariantCulture) : null;
        }

        private Node ParseAtom()
        {
            if (TryTake('('))
            {
                return ParseGroup();
            }
            if (TryTake('['))
            {
                return new CharNode(ParseClass());
            }
            if (TryTake('.'))
            {
                return new CharNode(new CodePointSet { Negated = true }.AddRange('\n', '\n'));
            }
            if (TryTake('\\'))
            {
                Escape escape = ParseEscape(inClass: false);
                return new CharNode(escape.Set ?? Literal(escape.CodePoint!.Value));
            }
            if ("*+?{}^$".Contains(Peek))
            {
                throw Unsupported($"'{Peek}' outside a literal escape");
            }
            return new CharNode(Literal(TakeCodePoint()));
        }

        private Node ParseGroup()
        {
            bool outerIgnoreCase = _ignoreCase;
            Node body;
            if (TryTake("?:"))
            {
                body = ParseAlternation();
            }
            else if (TryTake("?i:"))
            {
                _ignoreCase = true;
                body = ParseAlternation();
            }
            else if (TryTake("?="))
            {
                body = new LookAheadNode(ParseAlternation(), Negated: false);
            }
            else if (TryTake("?!"))
            {
                body = new LookAheadNode(ParseAlternation(), Negated: true);
            }
            else if (!AtEnd && Peek == '?')
            {
                throw Unsupported("a group kind other than (?:, (?i:, (?= and (?!");
            }
            else
            {
                body = ParseAlternation();
            }
            _ignoreCase = outerIgnoreCase;
            Expect(')');
            return body;
        }

        private int TakeCodePoint()
        {
            Rune rune = Rune.GetRuneAt(pattern, _at);
            _at += rune.Utf16SequenceLength;
            return rune.Value;
        }

        /// <summary>
        /// A literal, case-folded inside (?i:..). Only ASCII is folded, and exactly: besides the other
        /// ASCII case, Unicode's CaseFolding.txt folds just U+017F (ſ) to 's' and U+212A (Kelvin) to 'k'.
        /// </summary>
        private CodePointSet Literal(int codePoint)
        {
            CodePointSet set = CodePointSet.Single(codePoint);
            if (!_ignoreCase)
            {
                return set;
            }
            if (codePoint > 0x7F)
            {
                throw Unsupported($"the non-ASCII literal U+{codePoint:X4} in a case-insensitive group");
            }
            if (!char.IsAsciiLetter((char)codePoint))
            {
                return set;
            }
            int lower = char.ToLowerInvariant((char)codePoint);
            set.AddRange(lower, lower).AddRange(char.ToUpperInvariant((char)lower), char.ToUpperInvariant((char)lower));
            if (lower == 's')
            {
                set.AddRange(0x017F, 0x017F);
            }
            else if (lower == 'k')
            {
                set.AddRange(0x212A, 0x212A);
            }
            return set;
        }

        private CodePointSet ParseClass()
        {
            if (_ignoreCase)
            {
                throw Unsupported("a character class in a case-insensitive group");
            }
            var set = new CodePointSet { Negated = TryTake('^') };
            do
            {
                if (AtEnd)
                {
                    throw Unsupported("an unterminated character class");
                }
                if (Peek == '[' || TryTake("&&"))
                {
                    throw Unsupported("a nested class or class intersection");
                }
                Escape low = TryTake('\\') ? ParseEscape(inClass: true) : new Escape(TakeCodePoint(), null);
                if (low.Set is not null)
                {
                    set.AddNested(low.Set);
                    continue;
                }
                if (_at + 1 < pattern.Length && Peek == '-' && pattern[_at + 1] != ']')
                {
                    _at++;
                    Escape high = TryTake('\\') ? ParseEscape(inClass: true) : new Escape(TakeCodePoint(), null);
                    if (high.CodePoint is not int last || last < low.CodePoint)
                    {
                        throw Unsupported("a range that is reversed or ends in a class escape");
                    }
                    set.AddRange(low.CodePoint!.Value, last);
                }
                else
                {
                    set.AddRange(low.CodePoint!.Value, low.CodePoint.Value);
                }
            }
            while (!TryTake(']'));
            return set;
        }

        /// <summary>What a backslash escape stands for: one code point, or a class (\s, \p{L}, ...).</summary>
        private readonly record struct Escape(int? CodePoint, CodePointSet? Set);

        private Escape ParseEscape(bool inClass)
        {
            if (AtEnd)
            {
                throw Unsupported("a trailing backslash");
            }
            char c = pattern[_at++];
            switch (c)
            {
                case 's': return new Escape(null, CodePointSet.Whitespace());
                case 'S': return new Escape(null, CodePointSet.Whitespace(negated: true));
                case 'd': return new Escape(null, CodePointSet.Digit());
                case 'D': return new Escape(null, CodePointSet.Digit(negated: true));
                case 'w': return new Escape(null, CodePointSet.Word());
                case 'W': return new Escape(null, CodePointSet.Word(negated: true));
                case 'p':
                case 'P':
                    return new Escape(null, ParseProperty(negated: c == 'P'));
                case 'r': return new Escape('\r', null);
                case 'n': return new Escape('\n', null);
                case 't': return new Escape('\t', null);
                case 'f': return new Escape('\f', null);
                case 'v': return new Escape('\v', null);
                case 'x': return new Escape(ParseHex(), null);
                case 'u': return new Escape(ParseHexDigits(4), null);
            }
            _at--;
            if (char.IsAsciiLetterOrDigit(c))
            {
                throw Unsupported(inClass ? $"the class escape \\{c}" : $"the escape \\{c} (anchors, back-references and the like)");
            }
            return new Escape(TakeCodePoint(), null);
        }

        private int ParseHex()
        {
            if (!TryTake('{'))
            {
                return ParseHexDigits(2);
            }
            int close = pattern.IndexOf('}', _at);
            if (close < 0 || !int.TryParse(pattern.AsSpan(_at, close - _at), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value))
            {
                throw Unsupported("a malformed \\x{..} escape");
            }
            _at = close + 1;
            return value;
        }

        private int ParseHexDigits(int count)
        {
            if (_at + count > pattern.Length
                || !int.TryParse(pattern.AsSpan(_at, count), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value))
            {
                throw Unsupported($"a malformed escape (expected {count} hex digits)");
            }
            _at += count;
            return value;
        }

        private CodePointSet ParseProperty(bool negated)
        {
            Expect('{');
            if (TryTake('^'))
            {
                negated = !negated;
            }
            int close = pattern.IndexOf('}', _at);
            if (close < 0)
            {
                throw Unsupported("an unterminated \\p{..}");
            }
            string name = pattern[_at..close];
            if (!CategoryGroups.TryGetValue(name, out UnicodeCategory[]? categories))
            {
                throw Unsupported($"the property \\p{{{name}}} (only general categories such as L, Lu, N, Nd, P, S, Z are)");
            }
            _at = close + 1;
            return new CodePointSet { Negated = negated }.AddCategories(categories);
        }

        private static readonly Dictionary<string, UnicodeCategory[]> CategoryGroups = BuildCategoryGroups();

        private static Dictionary<string, UnicodeCategory[]> BuildCategoryGroups()
        {
            var byName = new Dictionary<string, UnicodeCategory>
            {
                ["Lu"] = UnicodeCategory.UppercaseLetter, ["Ll"] = UnicodeCategory.LowercaseLetter,
                ["Lt"] = UnicodeCategory.TitlecaseLetter, ["Lm"] = UnicodeCategory.ModifierLetter,
                ["Lo"] = UnicodeCategory.OtherLetter,
                ["Mn"] = UnicodeCategory.NonSpacingMark, ["Mc"] = UnicodeCategory.SpacingCombiningMark,
                ["Me"] = UnicodeCategory.EnclosingMark,
                ["Nd"] = UnicodeCategory.DecimalDigitNumber, ["Nl"] = UnicodeCategory.LetterNumber,
                ["No"] = UnicodeCategory.OtherNumber,
                ["Pc"] = UnicodeCategory.ConnectorPunctuation, ["Pd"] = UnicodeCategory.DashPunctuation,
                ["Ps"] = UnicodeCategory.OpenPunctuation, ["Pe"] = UnicodeCategory.ClosePunctuation,
                ["Pi"] = UnicodeCategory.InitialQuotePunctuation, ["Pf"] = UnicodeCategory.FinalQuotePunctuation,
                ["Po"] = UnicodeCategory.OtherPunctuation,
                ["Sm"] = UnicodeCategory.MathSymbol, ["Sc"] = UnicodeCategory.CurrencySymbol,
                ["Sk"] = UnicodeCategory.ModifierSymbol, ["So"] = UnicodeCategory.OtherSymbol,
                ["Zs"] = UnicodeCategory.SpaceSeparator, ["Zl"] = UnicodeCategory.LineSeparator,
                ["Zp"] = UnicodeCategory.ParagraphSeparator,
                ["Cc"] = UnicodeCategory.Control, ["Cf"] = UnicodeCategory.Format,
                ["Cs"] = UnicodeCategory.Surrogate, ["Co"] = UnicodeCategory.PrivateUse,
                ["Cn"] = UnicodeCategory.OtherNotAssigned,
            };
            var groups = byName.ToDictionary(pair => pair.Key, pair => new[] { pair.Value });
            foreach (IGrouping<char, KeyValuePair<string, UnicodeCategory>> major in byName.GroupBy(pair => pair.Key[0]))
            {
                groups[major.Key.ToString()] = major.Select(pair => pair.Value).ToArray();
            }
            return groups;
        }
    }
}
