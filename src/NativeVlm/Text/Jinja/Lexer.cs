using System.Globalization;
using System.Text;

namespace NativeVlm.Text.Jinja;

internal enum TokenKind
{
    /// <summary>Template text outside tags, whitespace control already applied.</summary>
    Text,
    /// <summary><c>{{</c></summary>
    OutputBegin,
    /// <summary><c>{%</c></summary>
    StatementBegin,
    /// <summary><c>}}</c> or <c>%}</c></summary>
    TagEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
}

internal readonly record struct Token(TokenKind Kind, string Value, int Line);

/// <summary>
/// Splits a template into text and tag tokens as Jinja2's lexer does with transformers' settings
/// (trim_blocks, lstrip_blocks, keep_trailing_newline off): line breaks normalized to "\n" and one
/// trailing newline dropped; <c>-</c> strips whitespace beside a tag, <c>+</c> keeps it; a block or
/// comment tag alone on its line loses the indentation before it and the newline after it.
/// </summary>
internal sealed class Lexer
{
    private static readonly string[] Operators =
        ["//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"];

    private readonly string _name;
    private readonly string _source;
    private readonly List<Token> _tokens = [];
    private int _at;
    private int _line = 1;

    /// <summary>Jinja2's line_starting: the last thing consumed ended a line.</summary>
    private bool _lineStarting = true;

    private Lexer(string name, string source)
    {
        _name = name;
        string normalized = source.Replace("\r\n", "\n").Replace('\r', '\n');
        _source = normalized.EndsWith('\n') ? normalized[..^1] : normalized;
    }

    public static List<Token> Tokenize(string name, string source)
    {
        var lexer = new Lexer(name, source);
        lexer.Run();
        return lexer._tokens;
    }

    private ChatTemplateException Error(string detail) => new(_name, _line, detail);

    private void Run()
    {
        while (_at < _source.Length)
        {
            int tag = NextTagStart(_at);
            string text = _source[_at..(tag < 0 ? _source.Length : tag)];
            if (tag < 0)
            {
                AddText(text, _line);
                return;
            }
            char kind = _source[tag + 1];
            char sign = tag + 2 < _source.Length && _source[tag + 2] is '-' or '+' ? _source[tag + 2] : '\0';
            int textLine = _line;
            _line += Count(text, '\n');
            if (sign == '-')
            {
                text = PyString.RStrip(text);
            }
            else if (sign != '+' && kind != '{')
            {
                text = LStripBlock(text);
            }
            AddText(text, textLine);
            _at = tag + 2 + (sign == '\0' ? 0 : 1);
            if (kind == '#')
            {
                SkipComment();
            }
            else
            {
                LexTag(kind == '{' ? TokenKind.OutputBegin : TokenKind.StatementBegin);
            }
        }
    }

    private void AddText(string text, int line)
    {
        if (text.Length > 0)
        {
            _tokens.Add(new Token(TokenKind.Text, text, line));
        }
    }

    private int NextTagStart(int from)
    {
        for (int i = _source.IndexOf('{', from); i >= 0 && i + 1 < _source.Length; i = _source.IndexOf('{', i + 1))
        {
            if (_source[i + 1] is '{' or '%' or '#')
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>lstrip_blocks: drop the spaces between the line's start and a block or comment tag.</summary>
    private string LStripBlock(string text)
    {
        int lineStart = text.LastIndexOf('\n') + 1;
        bool onlySpace = lineStart < text.Length && !text.AsSpan(lineStart).ContainsAnyExcept(PyString.Whitespace);
        return (lineStart > 0 || _lineStarting) && onlySpace ? text[..lineStart] : text;
    }

    private void SkipComment()
    {
        int end = _source.IndexOf("#}", _at, StringComparison.Ordinal);
        if (end < 0)
        {
            throw Error("the comment is not closed with #}");
        }
        char sign = end - 1 >= _at ? _source[end - 1] : '\0';
        _line += Count(_source.AsSpan(_at, end - _at), '\n');
        _at = end + 2;
        ConsumeTagEndWhitespace(sign);
    }

    /// <summary>After a tag end: all whitespace for "-", nothing for "+", one newline otherwise (trim_blocks, not after an output tag).</summary>
    private void ConsumeTagEndWhitespace(char sign, bool isOutput = false)
    {
        int start = _at;
        if (sign == '-')
        {
            while (_at < _source.Length && PyString.IsSpace(_source[_at]))
            {
                _at++;
            }
        }
        else if (sign != '+' && !isOutput && _at < _source.Length && _source[_at] == '\n')
        {
            _at++;
        }
        _line += Count(_source.AsSpan(start, _at - start), '\n');
        _lineStarting = _at > start && _source[_at - 1] == '\n';
    }

    private void LexTag(TokenKind begin)
    {
        _tokens.Add(new Token(begin, begin == TokenKind.OutputBegin ? "{{" : "{%", _line));
        bool isOutput = begin == TokenKind.OutputBegin;
        var brackets = new Stack<char>();
        while (true)
        {
            if (brackets.Count == 0 && TryTagEnd(isOutput))
            {
                return;
            }
            if (_at >= _source.Length)
            {
                throw Error(isOutput ? "the output tag is not closed with }}" : "the statement tag is not closed with %}");
            }
            char c = _source[_at];
            if (PyString.IsSpace(c))
            {
                _line += c == '\n' ? 1 : 0;
                _at++;
                continue;
            }
            if (char.IsAsciiDigit(c))
            {
                LexNumber();
            }
            else if (char.IsAsciiLetter(c) || c == '_')
            {
                int start = _at;
                while (_at < _source.Length && (char.IsAsciiLetterOrDigit(_source[_at]) || _source[_at] == '_'))
                {
                    _at++;
                }
                _tokens.Add(new Token(TokenKind.Name, _source[start.._at], _line));
            }
            else if (c is '\'' or '"')
            {
                LexString(c);
            }
            else
            {
                string op = Operators.FirstOrDefault(o => _source.AsSpan(_at).StartsWith(o, StringComparison.Ordinal))
                    ?? throw Error($"unexpected character '{c}' in a tag");
                _at += op.Length;
                TrackBrackets(op, brackets);
                _tokens.Add(new Token(TokenKind.Operator, op, _line));
            }
        }
    }

    private void TrackBrackets(string op, Stack<char> brackets)
    {
        switch (op)
        {
            case "(": brackets.Push(')'); break;
            case "[": brackets.Push(']'); break;
            case "{": brackets.Push('}'); break;
            case ")" or "]" or "}":
                if (brackets.Count == 0 || brackets.Pop() != op[0])
                {
                    throw Error($"unbalanced '{op}'");
                }
                break;
        }
    }

    private bool TryTagEnd(bool isOutput)
    {
        string close = isOutput ? "}}" : "%}";
        ReadOnlySpan<char> rest = _source.AsSpan(_at);
        char sign = rest.Length > 2 && rest[0] is '-' or '+' && rest[1..].StartsWith(close, StringComparison.Ordinal) ? rest[0] : '\0';
        if (isOutput && sign == '+')
        {
            return false;
        }
        if (sign == '\0' && !rest.StartsWith(close, StringComparison.Ordinal))
        {
            return false;
        }
        _tokens.Add(new Token(TokenKind.TagEnd, close, _line));
        _at += close.Length + (sign == '\0' ? 0 : 1);
        ConsumeTagEndWhitespace(sign, isOutput);
        return true;
    }

    private void LexNumber()
    {
        int start = _at;
        while (_at < _source.Length && char.IsAsciiDigit(_source[_at]))
        {
            _at++;
        }
        bool isFloat = false;
        if (_at + 1 < _source.Length && _source[_at] == '.' && char.IsAsciiDigit(_source[_at + 1]))
        {
            isFloat = true;
            _at++;
            while (_at < _source.Length && char.IsAsciiDigit(_source[_at]))
            {
                _at++;
            }
        }
        if (_at < _source.Length && _source[_at] is 'e' or 'E')
        {
            int exponent = _at + 1 < _source.Length && _source[_at + 1] is '+' or '-' ? _at + 2 : _at + 1;
            if (exponent < _source.Length && char.IsAsciiDigit(_source[exponent]))
            {
                isFloat = true;
                _at = exponent;
                while (_at < _source.Length && char.IsAsciiDigit(_source[_at]))
                {
                    _at++;
                }
            }
        }
        string text = _source[start.._at];
        if (!isFloat && text.Length > 1 && text[0] == '0' && text.Any(c => c != '0'))
        {
            throw Error($"the integer literal '{text}' (leading zero) is not supported");
        }
        _tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, text, _line));
    }

    /// <summary>A string literal, unescaped as Python's unicode-escape codec does (unknown escapes keep their backslash).</summary>
    private void LexString(char quote)
    {
        int line = _line;
        var value = new StringBuilder();
        _at++;
        while (true)
        {
            if (_at >= _source.Length)
            {
                throw Error("the string literal is not closed");
            }
            char c = _source[_at++];
            if (c == quote)
            {
                break;
            }
            if (c == '\n')
            {
                _line++;
            }
            if (c != '\\' || _at >= _source.Length)
            {
                value.Append(c);
                continue;
            }
            char e = _source[_at++];
            switch (e)
            {
                case '\n': _line++; break;
                case '\\': value.Append('\\'); break;
                case '\'': value.Append('\''); break;
                case '"': value.Append('"'); break;
                case 'a': value.Append('\a'); break;
                case 'b': value.Append('\b'); break;
                case 'f': value.Append('\f'); break;
                case 'n': value.Append('\n'); break;
                case 'r': value.Append('\r'); break;
                case 't': value.Append('\t'); break;
                case 'v': value.Append('\v'); break;
                case 'x': value.Append(char.ConvertFromUtf32(HexEscape(2))); break;
                case 'u': value.Append(char.ConvertFromUtf32(HexEscape(4))); break;
                case 'U': value.Append(char.ConvertFromUtf32(HexEscape(8))); break;
                case >= '0' and <= '7':
                    int octal = e - '0';
                    for (int i = 0; i < 2 && _at < _source.Length && _source[_at] is >= '0' and <= '7'; i++)
                    {
                        octal = octal * 8 + (_source[_at++] - '0');
                    }
                    value.Append((char)octal);
                    break;
                default:
                    value.Append('\\').Append(e);
                    break;
            }
        }
        _tokens.Add(new Token(TokenKind.String, value.ToString(), line));
    }

    private int HexEscape(int digits)
    {
        if (_at + digits > _source.Length
            || !int.TryParse(_source.AsSpan(_at, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value)
            || value > 0x10FFFF || value is >= 0xD800 and <= 0xDFFF)
        {
            throw Error($"a malformed \\x, \\u or \\U escape in a string literal (expected {digits} hex digits)");
        }
        _at += digits;
        return value;
    }

    private static int Count(ReadOnlySpan<char> text, char c) => text.Count(c);
}
