using System.Text;

namespace NativeVlm.Text.Jinja;

/// <summary>
/// Renders parsed statements with Jinja2's semantics: a for body runs each iteration in a fresh scope
/// (so a <c>set</c> inside a loop is gone after it, which is why templates use namespace()), an if does
/// not open a scope; names resolve through the scopes, then the render variables, then the globals.
/// A Python error becomes a <see cref="ChatTemplateException"/> naming the line.
/// </summary>
internal sealed class Renderer
{
    private readonly string _name;
    private readonly IReadOnlyDictionary<string, object?> _variables;
    private readonly List<Dictionary<string, object?>> _scopes = [[]];

    private Renderer(string name, IReadOnlyDictionary<string, object?> variables) => (_name, _variables) = (name, variables);

    public static string Render(string name, List<Statement> template, IReadOnlyDictionary<string, object?> variables)
    {
        var output = new StringBuilder();
        new Renderer(name, variables).Execute(template, output);
        return output.ToString();
    }

    private void Execute(List<Statement> statements, StringBuilder output)
    {
        foreach (Statement statement in statements)
        {
            switch (statement)
            {
                case TextStatement text:
                    output.Append(text.Text);
                    break;
                case OutputStatement print:
                    output.Append(Py.Str(Evaluate(print.Value)));
                    break;
                case IfStatement choice:
                    List<Statement> branch = choice.Else;
                    foreach ((Expression condition, List<Statement> body) in choice.Branches)
                    {
                        if (Py.Truthy(Evaluate(condition)))
                        {
                            branch = body;
                            break;
                        }
                    }
                    Execute(branch, output);
                    break;
                case ForStatement loop:
                    ExecuteFor(loop, output);
                    break;
                case SetStatement set:
                    ExecuteSet(set);
                    break;
            }
        }
    }

    private void ExecuteFor(ForStatement loop, StringBuilder output)
    {
        object? iterable = Evaluate(loop.Items);
        List<object?> items = Guard(loop.Line, () => Py.Iterate(iterable).ToList());
        if (loop.Filter is not null)
        {
            items = items.Where(item => InScope(() =>
            {
                Bind(loop, item);
                return Py.Truthy(Evaluate(loop.Filter));
            })).ToList();
        }
        for (int i = 0; i < items.Count; i++)
        {
            InScope(() =>
            {
                Bind(loop, items[i]);
                _scopes[^1]["loop"] = new LoopState(items, i);
                Execute(loop.Body, output);
                return true;
            });
        }
        if (items.Count == 0)
        {
            Execute(loop.Else, output);
        }
    }

    private T InScope<T>(Func<T> body)
    {
        _scopes.Add([]);
        try
        {
            return body();
        }
        finally
        {
            _scopes.RemoveAt(_scopes.Count - 1);
        }
    }

    /// <summary>Binds the loop's target names to an item, unpacking it when there are several (<c>for k, v in d.items()</c>).</summary>
    private void Bind(ForStatement loop, object? item)
    {
        if (loop.Targets.Count == 1)
        {
            _scopes[^1][loop.Targets[0]] = item;
            return;
        }
        List<object?> parts = Guard(loop.Line, () => Py.Iterate(item).ToList());
        if (parts.Count != loop.Targets.Count)
        {
            throw new ChatTemplateException(_name, loop.Line, $"cannot unpack {parts.Count} values into {loop.Targets.Count} names");
        }
        for (int i = 0; i < parts.Count; i++)
        {
            _scopes[^1][loop.Targets[i]] = parts[i];
        }
    }

    private void ExecuteSet(SetStatement set)
    {
        object? value = Evaluate(set.Value);
        if (set.Attribute is null)
        {
            _scopes[^1][set.Name] = value;
            return;
        }
        if (Lookup(set.Name) is not Namespace ns)
        {
            throw new ChatTemplateException(_name, set.Line, $"cannot assign the attribute '{set.Attribute}' of '{set.Name}', which is not a namespace()");
        }
        ns.Attributes[set.Attribute] = value;
    }

    private object? Lookup(string name)
    {
        for (int i = _scopes.Count - 1; i >= 0; i--)
        {
            if (_scopes[i].TryGetValue(name, out object? value))
            {
                return value;
            }
        }
        return _variables.TryGetValue(name, out object? variable) ? variable
            : Builtins.Globals.TryGetValue(name, out GlobalFunction? function) ? function
            : new Undefined($"'{name}' is undefined");
    }

    private T Guard<T>(int line, Func<T> operation)
    {
        try
        {
            return operation();
        }
        catch (PyException e)
        {
            throw new ChatTemplateException(_name, line, e.Message);
        }
        catch (OverflowException)
        {
            throw new ChatTemplateException(_name, line, "integer overflow (NativeVlm's integers are 64-bit)");
        }
    }

    private object? Evaluate(Expression expression) => expression switch
    {
        Constant c => c.Value,
        Variable v => Lookup(v.Name),
        ListLiteral list => list.Items.Select(Evaluate).ToList(),
        DictLiteral dict => EvaluateDict(dict),
        Attribute a => Guard(a.Line, () => Builtins.GetAttribute(Evaluate(a.Target), a.Name)),
        Item item => EvaluateItem(item),
        Slice slice => EvaluateSlice(slice),
        Call call => EvaluateCall(call),
        Filter filter => EvaluateFilter(filter),
        Test test => EvaluateTest(test),
        Unary unary => EvaluateUnary(unary),
        Binary binary => EvaluateBinary(binary),
        Conditional conditional => Py.Truthy(Evaluate(conditional.Condition))
            ? Evaluate(conditional.Then)
            : conditional.Otherwise is null ? new Undefined("the conditional expression has no else") : Evaluate(conditional.Otherwise),
        _ => throw new ChatTemplateException(_name, expression.Line, $"cannot evaluate {expression.GetType().Name}"),
    };

    private OrderedDictionary<string, object?> EvaluateDict(DictLiteral literal)
    {
        var dict = new OrderedDictionary<string, object?>();
        foreach ((Expression keyExpression, Expression valueExpression) in literal.Items)
        {
            object? key = Evaluate(keyExpression);
            dict[key as string ?? throw new ChatTemplateException(_name, literal.Line, $"dict keys must be strings here, not {Py.TypeName(key)}")] = Evaluate(valueExpression);
        }
        return dict;
    }

    private object? EvaluateItem(Item item)
    {
        object? target = Evaluate(item.Target);
        object? key = Evaluate(item.Key);
        return Guard(item.Line, () => Builtins.GetItem(target, key));
    }

    private object? EvaluateSlice(Slice slice)
    {
        object? target = Evaluate(slice.Target);
        long? Bound(Expression? e)
        {
            object? value = e is null ? null : Evaluate(e);
            return value is null ? null : Guard(slice.Line, () => Py.ToLong(value));
        }
        long? start = Bound(slice.Start), stop = Bound(slice.Stop), step = Bound(slice.Step);
        return Guard(slice.Line, () => Py.Slice(target, start, stop, step));
    }

    private CallArguments EvaluateArguments(Arguments arguments) => new(
        arguments.Positional.Select(Evaluate).ToList(),
        arguments.Named.ToDictionary(pair => pair.Name, pair => Evaluate(pair.Value)));

    private object? EvaluateCall(Call call)
    {
        object? callee = Evaluate(call.Callee);
        CallArguments arguments = EvaluateArguments(call.Arguments);
        return Guard(call.Line, () => callee switch
        {
            BoundMethod method => Builtins.CallMethod(method, arguments),
            GlobalFunction function => Builtins.CallGlobal(function, arguments),
            Undefined u => throw u.Error(),
            _ => throw new PyException($"'{Py.TypeName(callee)}' object is not callable"),
        });
    }

    private object? EvaluateFilter(Filter filter)
    {
        object? value = Evaluate(filter.Value);
        CallArguments arguments = EvaluateArguments(filter.Arguments);
        return Guard(filter.Line, () => Builtins.ApplyFilter(filter.Name, value, arguments));
    }

    private object? EvaluateTest(Test test)
    {
        object? value = Evaluate(test.Value);
        CallArguments arguments = EvaluateArguments(test.Arguments);
        return Guard(test.Line, () => Builtins.ApplyTest(test.Name, value, arguments)) != test.Negated;
    }

    private object? EvaluateUnary(Unary unary)
    {
        object? operand = Evaluate(unary.Operand);
        return unary.Operator switch
        {
            "not" => !Py.Truthy(operand),
            "-" => Guard(unary.Line, () => Py.Negate(operand)),
            _ => Py.IsNumber(operand) ? operand : throw new ChatTemplateException(_name, unary.Line, $"bad operand type for unary +: '{Py.TypeName(operand)}'"),
        };
    }

    private object? EvaluateBinary(Binary binary)
    {
        object? left = Evaluate(binary.Left);
        switch (binary.Operator)
        {
            case "and":
                return Py.Truthy(left) ? Evaluate(binary.Right) : left;
            case "or":
                return Py.Truthy(left) ? left : Evaluate(binary.Right);
        }
        object? right = Evaluate(binary.Right);
        return Guard(binary.Line, () => binary.Operator switch
        {
            "+" => Py.Add(left, right),
            "~" => Py.Str(left) + Py.Str(right),
            "==" => Py.AreEqual(left, right),
            "!=" => !Py.AreEqual(left, right),
            "<" => Py.Compare(left, right, "<") < 0,
            "<=" => Py.Compare(left, right, "<=") <= 0,
            ">" => Py.Compare(left, right, ">") > 0,
            ">=" => Py.Compare(left, right, ">=") >= 0,
            "in" => Py.Contains(right, left),
            "not in" => !Py.Contains(right, left),
            _ => Py.Arithmetic(binary.Operator, left, right),
        });
    }
}
