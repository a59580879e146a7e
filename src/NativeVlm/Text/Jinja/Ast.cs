namespace NativeVlm.Text.Jinja;

/// <summary>A template statement; <see cref="Line"/> is where it starts, for errors.</summary>
internal abstract record Statement(int Line);

internal sealed record TextStatement(int Line, string Text) : Statement(Line);

/// <summary><c>{{ expression }}</c></summary>
internal sealed record OutputStatement(int Line, Expression Value) : Statement(Line);

/// <summary><c>{% if %}</c> with its <c>elif</c> branches in order; <see cref="Else"/> empty when absent.</summary>
internal sealed record IfStatement(int Line, List<(Expression Condition, List<Statement> Body)> Branches, List<Statement> Else) : Statement(Line);

/// <summary><c>{% for a, b in items if filter %}</c>; <see cref="Else"/> renders when no item passed.</summary>
internal sealed record ForStatement(int Line, List<string> Targets, Expression Items, Expression? Filter, List<Statement> Body, List<Statement> Else) : Statement(Line);

/// <summary><c>{% set name = value %}</c> or <c>{% set namespace.attribute = value %}</c>.</summary>
internal sealed record SetStatement(int Line, string Name, string? Attribute, Expression Value) : Statement(Line);

internal abstract record Expression(int Line);

internal sealed record Constant(int Line, object? Value) : Expression(Line);

internal sealed record ListLiteral(int Line, List<Expression> Items) : Expression(Line);

internal sealed record DictLiteral(int Line, List<(Expression Key, Expression Value)> Items) : Expression(Line);

internal sealed record Variable(int Line, string Name) : Expression(Line);

/// <summary><c>target.name</c>: Python attribute first, then item (Jinja's getattr).</summary>
internal sealed record Attribute(int Line, Expression Target, string Name) : Expression(Line);

/// <summary><c>target[key]</c>: item first, then attribute (Jinja's getitem).</summary>
internal sealed record Item(int Line, Expression Target, Expression Key) : Expression(Line);

internal sealed record Slice(int Line, Expression Target, Expression? Start, Expression? Stop, Expression? Step) : Expression(Line);

internal sealed record Arguments(List<Expression> Positional, List<(string Name, Expression Value)> Named);

internal sealed record Call(int Line, Expression Callee, Arguments Arguments) : Expression(Line);

/// <summary><c>value | name(arguments)</c></summary>
internal sealed record Filter(int Line, Expression Value, string Name, Arguments Arguments) : Expression(Line);

/// <summary><c>value is [not] name arguments</c></summary>
internal sealed record Test(int Line, Expression Value, string Name, Arguments Arguments, bool Negated) : Expression(Line);

/// <summary><c>not</c>, unary <c>-</c> and <c>+</c>.</summary>
internal sealed record Unary(int Line, string Operator, Expression Operand) : Expression(Line);

/// <summary>Arithmetic, <c>~</c>, comparisons, <c>in</c> / <c>not in</c>, and the short-circuit <c>and</c> / <c>or</c>.</summary>
internal sealed record Binary(int Line, string Operator, Expression Left, Expression Right) : Expression(Line);

/// <summary><c>then if condition else otherwise</c>; no else gives Undefined.</summary>
internal sealed record Conditional(int Line, Expression Condition, Expression Then, Expression? Otherwise) : Expression(Line);
