using System.Globalization;

namespace NativeVlm.Text.Jinja;

/// <summary>
/// Builds statements and expressions from the lexer's tokens with Jinja2's grammar and precedence
/// (conditional &lt; or &lt; and &lt; not &lt; comparison &lt; + - &lt; ~ &lt; * / // % &lt; ** &lt; unary
/// &lt; postfix, filters and tests). Tags other than if/elif/else, for/else and set, and a set with a
/// block body, are errors naming their line.
/// </summary>
internal sealed class Parser
{
    private static readonly HashSet<string> ComparisonOperators = ["==", "!=", "<", "<=", ">", ">="];

    private readonly string _name;
    private readonly List<Token> _tokens;
    private int _at;

    private Parser(string name, List<Token> tokens) => (_name, _tokens) = (name, tokens);

    public static List<Statement> Parse(string name, string source)
    {
        var parser = new Parser(name, Lexer.Tokenize(name, source));
        List<Statement> body = parser.ParseBody(out string? stoppedAt);
        return stoppedAt is null ? body : throw parser.Error($"'{stoppedAt}' without a matching opening tag");
    }

    private Token Current => _at < _tokens.Count ? _tokens[_at] : new Token(TokenKind.TagEnd, "<end of template>", LastLine);

    private int LastLine => _tokens.Count == 0 ? 1 : _tokens[^1].Line;

    private ChatTemplateException Error(string detail) => new(_name, Current.Line, detail);

    private bool IsOperator(string op) => Current.Kind == TokenKind.Operator && Current.Value == op;

    private bool IsName(string name) => Current.Kind == TokenKind.Name && Current.Value == name;

    private Token Next() => _tokens[_at++];

    private bool TryOperator(string op)
    {
        if (!IsOperator(op))
        {
            return false;
        }
        _at++;
        return true;
    }

    private bool TryName(string name)
    {
        if (!IsName(name))
        {
            return false;
        }
        _at++;
        return true;
    }

    private void ExpectOperator(string op)
    {
        if (!TryOperator(op))
        {
            throw Error($"expected '{op}', found '{Current.Value}'");
        }
    }

    private string ExpectName()
    {
        if (Current.Kind != TokenKind.Name)
        {
            throw Error($"expected a name, found '{Current.Value}'");
        }
        return Next().Value;
    }

    private void ExpectTagEnd()
    {
        if (Current.Kind != TokenKind.TagEnd || _at >= _tokens.Count)
        {
            throw Error($"expected the end of the tag, found '{Current.Value}'");
        }
        _at++;
    }

    /// <summary>
    /// Statements up to the end of the template or to a closing/intermediate tag (endif, elif, else,
    /// endfor), whose name comes back in <paramref name="stoppedAt"/> with the tag left unread.
    /// </summary>
    private List<Statement> ParseBody(out string? stoppedAt)
    {
        var body = new List<Statement>();
        while (_at < _tokens.Count)
        {
            Token token = Current;
            switch (token.Kind)
            {
                case TokenKind.Text:
                    body.Add(new TextStatement(token.Line, token.Value));
                    _at++;
                    break;
                case TokenKind.OutputBegin:
                    _at++;
                    body.Add(new OutputStatement(token.Line, ParseExpression()));
                    ExpectTagEnd();
                    break;
                case TokenKind.StatementBegin:
                    string tag = _at + 1 < _tokens.Count && _tokens[_at + 1].Kind == TokenKind.Name ? _tokens[_at + 1].Value : "";
                    if (tag is "endif" or "elif" or "else" or "endfor")
                    {
                        stoppedAt = tag;
                        return body;
                    }
                    _at++;
                    body.Add(ParseStatement(token.Line));
                    break;
                default:
                    throw Error($"unexpected '{token.Value}'");
            }
        }
        stoppedAt = null;
        return body;
    }

    private Statement ParseStatement(int line)
    {
        string tag = Current.Value;
        switch (tag)
        {
            case "if":
                _at++;
                return ParseIf(line);
            case "for":
                _at++;
                return ParseFor(line);
            case "set":
                _at++;
                return ParseSet(line);
            default:
                throw Error($"the tag '{tag}' is not supported (supported: if, elif, else, endif, for, endfor, set)");
        }
    }

    /// <summary>Reads "{% name" of an intermediate or closing tag the body stopped at.</summary>
    private void TakeClosingTag() => _at += 2;

    private IfStatement ParseIf(int line)
    {
        var branches = new List<(Expression, List<Statement>)>();
        List<Statement> otherwise = [];
        Expression condition = ParseExpression();
        while (true)
        {
            ExpectTagEnd();
            List<Statement> body = ParseBody(out string? stoppedAt);
            branches.Add((condition, body));
            if (stoppedAt is not ("elif" or "else" or "endif"))
            {
                throw Error($"the if on line {line} is not closed with endif");
            }
            TakeClosingTag();
            if (stoppedAt == "elif")
            {
                condition = ParseExpression();
                continue;
            }
            if (stoppedAt == "else")
            {
                ExpectTagEnd();
                otherwise = ParseBody(out stoppedAt);
                if (stoppedAt != "endif")
                {
                    throw Error($"the if on line {line} is not closed with endif");
                }
                TakeClosingTag();
            }
            ExpectTagEnd();
            return new IfStatement(line, branches, otherwise);
        }
    }

    private ForStatement ParseFor(int line)
    {
        var targets = new List<string> { ExpectName() };
        while (TryOperator(","))
        {
            targets.Add(ExpectName());
        }
        if (!TryName("in"))
        {
            throw Error($"expected 'in', found '{Current.Value}'");
        }
        Expression items = ParseOr();
        Expression? filter = TryName("if") ? ParseExpression() : null;
        if (IsName("recursive"))
        {
            throw Error("recursive for loops are not supported");
        }
        ExpectTagEnd();
        List<Statement> body = ParseBody(out string? stoppedAt);
        List<Statement> otherwise = [];
        if (stoppedAt == "else")
        {
            TakeClosingTag();
            ExpectTagEnd();
            otherwise = ParseBody(out stoppedAt);
        }
        if (stoppedAt != "endfor")
        {
            throw Error($"the for on line {line} is not closed with endfor");
        }
        TakeClosingTag();
        ExpectTagEnd();
        return new ForStatement(line, targets, items, filter, body, otherwise);
    }

    private SetStatement ParseSet(int line)
    {
        string name = ExpectName();
        string? attribute = TryOperator(".") ? ExpectName() : null;
        if (IsOperator(","))
        {
            throw Error("set with several targets is not supported");
        }
        if (!TryOperator("="))
        {
            throw Error(Current.Kind == TokenKind.TagEnd ? "a set block ({% set x %}...{% endset %}) is not supported" : $"expected '=', found '{Current.Value}'");
        }
        Expression value = ParseExpression();
        ExpectTagEnd();
        return new SetStatement(line, name, attribute, value);
    }

    private Expression ParseExpression()
    {
        Expression then = ParseOr();
        while (IsName("if"))
        {
            int line = Next().Line;
            Expression condition = ParseOr();
            Expression? otherwise = TryName("else") ? ParseExpression() : null;
            then = new Conditional(line, condition, then, otherwise);
        }
        return then;
    }

    private Expression ParseOr()
    {
        Expression left = ParseAnd();
        while (IsName("or"))
        {
            int line = Next().Line;
            left = new Binary(line, "or", left, ParseAnd());
        }
        return left;
    }

    private Expression ParseAnd()
    {
        Expression left = ParseNot();
        while (IsName("and"))
        {
            int line = Next().Line;
            left = new Binary(line, "and", left, ParseNot());
        }
        return left;
    }

    private Expression ParseNot()
    {
        if (IsName("not"))
        {
            int line = Next().Line;
            return new Unary(line, "not", ParseNot());
        }
        return ParseComparison();
    }

    /// <summary>Chains (a &lt; b &lt; c) are Python's: each comparison and-ed with the next.</summary>
    private Expression ParseComparison()
    {
        Expression left = ParseAdditive();
        Expression? chain = null;
        while (true)
        {
            int line = Current.Line;
            string op;
            if (Current.Kind == TokenKind.Operator && ComparisonOperators.Contains(Current.Value))
            {
                op = Next().Value;
            }
            else if (TryName("in"))
            {
                op = "in";
            }
            else if (IsName("not") && _at + 1 < _tokens.Count && _tokens[_at + 1] is { Kind: TokenKind.Name, Value: "in" })
            {
                _at += 2;
                op = "not in";
            }
            else
            {
                return chain ?? left;
            }
            Expression right = ParseAdditive();
            var comparison = new Binary(line, op, left, right);
            chain = chain is null ? comparison : new Binary(line, "and", chain, comparison);
            left = right;
        }
    }

    private Expression ParseAdditive()
    {
        Expression left = ParseConcat();
        while (IsOperator("+") || IsOperator("-"))
        {
            Token op = Next();
            left = new Binary(op.Line, op.Value, left, ParseConcat());
        }
        return left;
    }

    private Expression ParseConcat()
    {
        Expression left = ParseMultiplicative();
        while (IsOperator("~"))
        {
            int line = Next().Line;
            left = new Binary(line, "~", left, ParseMultiplicative());
        }
        return left;
    }

    private Expression ParseMultiplicative()
    {
        Expression left = ParsePower();
        while (IsOperator("*") || IsOperator("/") || IsOperator("//") || IsOperator("%"))
        {
            Token op = Next();
            left = new Binary(op.Line, op.Value, left, ParsePower());
        }
        return left;
    }

    private Expression ParsePower()
    {
        Expression left = ParseUnary(withFilters: true);
        while (IsOperator("**"))
        {
            int line = Next().Line;
            left = new Binary(line, "**", left, ParseUnary(withFilters: true));
        }
        return left;
    }

    private Expression ParseUnary(bool withFilters)
    {
        Expression operand;
        if (IsOperator("-") || IsOperator("+"))
        {
            Token op = Next();
            operand = new Unary(op.Line, op.Value, ParseUnary(withFilters: false));
        }
        else
        {
            operand = ParsePrimary();
        }
        operand = ParsePostfix(operand);
        return withFilters ? ParseFiltersAndTests(operand) : operand;
    }

    private Expression ParsePrimary()
    {
        Token token = Current;
        switch (token.Kind)
        {
            case TokenKind.Name:
                _at++;
                return token.Value switch
                {
                    "true" or "True" => new Constant(token.Line, true),
                    "false" or "False" => new Constant(token.Line, false),
                    "none" or "None" => new Constant(token.Line, null),
                    _ => new Variable(token.Line, token.Value),
                };
            case TokenKind.String:
                string text = Next().Value;
                while (Current.Kind == TokenKind.String)
                {
                    text += Next().Value;
                }
                return new Constant(token.Line, text);
            case TokenKind.Integer:
                _at++;
                return long.TryParse(token.Value, NumberStyles.None, CultureInfo.InvariantCulture, out long integer)
                    ? new Constant(token.Line, integer)
                    : throw Error($"the integer {token.Value} does not fit in 64 bits");
            case TokenKind.Float:
                _at++;
                return new Constant(token.Line, double.Parse(token.Value, CultureInfo.InvariantCulture));
            case TokenKind.Operator when token.Value == "(":
                _at++;
                Expression inner = ParseExpression();
                if (IsOperator(","))
                {
                    throw Error("tuples are not supported");
                }
                ExpectOperator(")");
                return inner;
            case TokenKind.Operator when token.Value == "[":
                _at++;
                var items = new List<Expression>();
                while (!TryOperator("]"))
                {
                    items.Add(ParseExpression());
                    if (!TryOperator(","))
                    {
                        ExpectOperator("]");
                        break;
                    }
                }
                return new ListLiteral(token.Line, items);
            case TokenKind.Operator when token.Value == "{":
                _at++;
                var pairs = new List<(Expression, Expression)>();
                while (!TryOperator("}"))
                {
                    Expression key = ParseExpression();
                    ExpectOperator(":");
                    pairs.Add((key, ParseExpression()));
                    if (!TryOperator(","))
                    {
                        ExpectOperator("}");
                        break;
                    }
                }
                return new DictLiteral(token.Line, pairs);
            default:
                throw Error($"unexpected '{token.Value}' where a value was expected");
        }
    }

    private Expression ParsePostfix(Expression target)
    {
        while (true)
        {
            int line = Current.Line;
            if (TryOperator("."))
            {
                if (Current.Kind == TokenKind.Integer)
                {
                    throw Error("item access by '.<number>' is not supported; use [<number>]");
                }
                target = new Attribute(line, target, ExpectName());
            }
            else if (TryOperator("["))
            {
                target = ParseSubscript(line, target);
            }
            else if (IsOperator("("))
            {
                target = new Call(line, target, ParseArguments());
            }
            else
            {
                return target;
            }
        }
    }

    private Expression ParseSubscript(int line, Expression target)
    {
        Expression? start = IsOperator(":") ? null : ParseExpression();
        if (!TryOperator(":"))
        {
            ExpectOperator("]");
            return new Item(line, target, start!);
        }
        Expression? stop = IsOperator(":") || IsOperator("]") ? null : ParseExpression();
        Expression? step = null;
        if (TryOperator(":"))
        {
            step = IsOperator("]") ? null : ParseExpression();
        }
        ExpectOperator("]");
        return new Slice(line, target, start, stop, step);
    }

    private Arguments ParseArguments()
    {
        ExpectOperator("(");
        var positional = new List<Expression>();
        var named = new List<(string, Expression)>();
        while (!TryOperator(")"))
        {
            if (Current.Kind == TokenKind.Name && _at + 1 < _tokens.Count && _tokens[_at + 1] is { Kind: TokenKind.Operator, Value: "=" })
            {
                string name = Next().Value;
                _at++;
                named.Add((name, ParseExpression()));
            }
            else if (named.Count > 0)
            {
                throw Error("a positional argument after a keyword argument");
            }
            else if (IsOperator("*") || IsOperator("**"))
            {
                throw Error("*args and **kwargs are not supported");
            }
            else
            {
                positional.Add(ParseExpression());
            }
            if (!TryOperator(","))
            {
                ExpectOperator(")");
                break;
            }
        }
        return new Arguments(positional, named);
    }

    private Expression ParseFiltersAndTests(Expression value)
    {
        while (true)
        {
            int line = Current.Line;
            if (TryOperator("|"))
            {
                string name = ExpectName();
                Arguments arguments = IsOperator("(") ? ParseArguments() : new Arguments([], []);
                value = new Filter(line, value, name, arguments);
            }
            else if (TryName("is"))
            {
                bool negated = TryName("not");
                string name = ExpectName();
                Arguments arguments = new([], []);
                if (IsOperator("("))
                {
                    arguments = ParseArguments();
                }
                else if (StartsTestArgument())
                {
                    arguments = new Arguments([ParsePostfix(ParsePrimary())], []);
                }
                value = new Test(line, value, name, arguments, negated);
            }
            else if (IsOperator("("))
            {
                value = new Call(line, value, ParseArguments());
            }
            else
            {
                return value;
            }
        }
    }

    /// <summary>Jinja2 lets a test take one argument without parentheses (<c>x is divisibleby 3</c>).</summary>
    private bool StartsTestArgument() => Current.Kind switch
    {
        TokenKind.Name when Current.Value == "is" => throw Error("tests cannot be chained with 'is'"),
        TokenKind.Name => Current.Value is not ("else" or "or" or "and"),
        TokenKind.String or TokenKind.Integer or TokenKind.Float => true,
        TokenKind.Operator => Current.Value is "[" or "{",
        _ => false,
    };
}
