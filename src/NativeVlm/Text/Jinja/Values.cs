using System.Globalization;
using System.Text;

namespace NativeVlm.Text.Jinja;

/// <summary>
/// A Python error raised while rendering (TypeError, UndefinedError, ...): the renderer turns it into a
/// <see cref="ChatTemplateException"/> carrying the line of the expression that raised it.
/// </summary>
internal sealed class PyException(string message) : Exception(message);

/// <summary>
/// Jinja2's Undefined: what a missing variable, key or attribute evaluates to. It prints as "", is false,
/// iterates as empty and has length 0; asking it for an attribute or item is an error that says what
/// was missing.
/// </summary>
internal sealed class Undefined(string description)
{
    /// <summary>"'x' is undefined", "'dict object' has no attribute 'y'".</summary>
    public string Description { get; } = description;

    public PyException Error() => new(Description);
}

/// <summary>The object namespace() returns: attributes that <c>{% set ns.x = ... %}</c> can change from inside a loop.</summary>
internal sealed class Namespace
{
    public OrderedDictionary<string, object?> Attributes { get; } = [];
}

/// <summary>The <c>loop</c> variable of a for body.</summary>
internal sealed class LoopState(List<object?> items, int index0)
{
    public object? Property(string name) => name switch
    {
        "index" => (long)index0 + 1,
        "index0" => (long)index0,
        "revindex" => (long)(items.Count - index0),
        "revindex0" => (long)(items.Count - index0 - 1),
        "first" => index0 == 0,
        "last" => index0 == items.Count - 1,
        "length" => (long)items.Count,
        "previtem" => index0 > 0 ? items[index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => index0 < items.Count - 1 ? items[index0 + 1] : new Undefined("there is no next item"),
        _ => new Undefined($"'LoopContext' has no attribute '{name}'"),
    };

    public override string ToString() => $"<LoopContext {index0 + 1}/{items.Count}>";
}

/// <summary>A method looked up on a value (<c>message.content.startswith</c>), called later.</summary>
internal sealed record BoundMethod(object Target, string Name);

/// <summary>A global function: range, namespace, raise_exception.</summary>
internal sealed record GlobalFunction(string Name);

/// <summary>
/// Python's semantics for the values a template sees: None (null), bool, int (long), float (double),
/// str, list (List), dict (OrderedDictionary with string keys), and Jinja's Undefined.
/// </summary>
internal static class Py
{
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        OrderedDictionary<string, object?> => "dict",
        Undefined => "Undefined",
        Namespace => "Namespace",
        BoundMethod or GlobalFunction => "builtin_function_or_method",
        _ => value.GetType().Name,
    };

    public static bool IsNumber(object? value) => value is bool or long or double;

    public static double ToDouble(object? value) => value switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        double d => d,
        _ => throw new PyException($"'{TypeName(value)}' is not a number"),
    };

    public static long ToLong(object? value) => value switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        _ => throw new PyException($"'{TypeName(value)}' object cannot be interpreted as an integer"),
    };

    public static bool Truthy(object? value) => value switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        OrderedDictionary<string, object?> dict => dict.Count > 0,
        _ => true,
    };

    /// <summary>Python's str(): what <c>{{ value }}</c> prints.</summary>
    public static string Str(object? value) => value switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(value),
    };

    public static string Repr(object? value) => value switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        string s => StringRepr(s),
        Undefined => "",
        List<object?> list => "[" + string.Join(", ", list.Select(Repr)) + "]",
        OrderedDictionary<string, object?> dict => "{" + string.Join(", ", dict.Select(p => $"{StringRepr(p.Key)}: {Repr(p.Value)}")) + "}",
        Namespace ns => $"<Namespace {Repr(new OrderedDictionary<string, object?>(ns.Attributes))}>",
        BoundMethod m => $"<built-in method {m.Name} of {TypeName(m.Target)} object>",
        GlobalFunction f => $"<function {f.Name}>",
        _ => value.ToString() ?? "",
    };

    /// <summary>Python's float repr: the shortest round-trip digits, positional for exponents -4..15, else scientific.</summary>
    public static string FloatRepr(double value)
    {
        if (double.IsNaN(value))
        {
            return "nan";
        }
        if (double.IsInfinity(value))
        {
            return value > 0 ? "inf" : "-inf";
        }
        string r = value.ToString("R", CultureInfo.InvariantCulture);
        string sign = r.StartsWith('-') ? "-" : "";
        r = r.TrimStart('-');
        int exponentAt = r.IndexOf('E');
        int exponent = exponentAt < 0 ? 0 : int.Parse(r[(exponentAt + 1)..], CultureInfo.InvariantCulture);
        string mantissa = exponentAt < 0 ? r : r[..exponentAt];
        int dot = mantissa.IndexOf('.');
        string digits = mantissa.Replace(".", "");
        int pointAt = (dot < 0 ? mantissa.Length : dot) + exponent;
        int leadingZeros = digits.Length - digits.TrimStart('0').Length;
        digits = digits.Trim('0');
        if (digits.Length == 0)
        {
            return sign + "0.0";
        }
        pointAt -= leadingZeros;
        int scientificExponent = pointAt - 1;
        if (scientificExponent is < -4 or >= 16)
        {
            string fraction = digits.Length > 1 ? "." + digits[1..] : "";
            return $"{sign}{digits[0]}{fraction}e{(scientificExponent < 0 ? '-' : '+')}{Math.Abs(scientificExponent):00}";
        }
        if (pointAt <= 0)
        {
            return $"{sign}0.{new string('0', -pointAt)}{digits}";
        }
        return pointAt >= digits.Length
            ? $"{sign}{digits}{new string('0', pointAt - digits.Length)}.0"
            : $"{sign}{digits[..pointAt]}.{digits[pointAt..]}";
    }

    /// <summary>Python's repr of a str: single quotes unless the text has ' and no ", escapes for the rest.</summary>
    public static string StringRepr(string text)
    {
        char quote = text.Contains('\'') && !text.Contains('"') ? '"' : '\'';
        var result = new StringBuilder(text.Length + 2).Append(quote);
        foreach (Rune rune in text.EnumerateRunes())
        {
            int c = rune.Value;
            switch (c)
            {
                case '\\': result.Append(@"\\"); break;
                case '\n': result.Append(@"\n"); break;
                case '\r': result.Append(@"\r"); break;
                case '\t': result.Append(@"\t"); break;
                default:
                    if (c == quote)
                    {
                        result.Append('\\').Append(quote);
                    }
                    else if (IsPrintable(rune))
                    {
                        result.Append(rune.ToString());
                    }
                    else
                    {
                        result.Append(c < 0x100 ? $"\\x{c:x2}" : c < 0x10000 ? $"\\u{c:x4}" : $"\\U{c:x8}");
                    }
                    break;
            }
        }
        return result.Append(quote).ToString();
    }

    /// <summary>Python's str.isprintable: not a control, format, surrogate, private-use, unassigned or separator (but space).</summary>
    private static bool IsPrintable(Rune rune) => rune.Value == ' ' || Rune.GetUnicodeCategory(rune) is not (
        UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
        or UnicodeCategory.OtherNotAssigned or UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator
        or UnicodeCategory.ParagraphSeparator);

    public static bool AreEqual(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (Undefined, Undefined) => true,
        (Undefined, _) or (_, Undefined) or (null, _) or (_, null) => false,
        _ when IsNumber(a) && IsNumber(b) => a is double || b is double ? ToDouble(a) == ToDouble(b) : ToLong(a) == ToLong(b),
        (string x, string y) => x == y,
        (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(pair => AreEqual(pair.First, pair.Second)),
        (OrderedDictionary<string, object?> x, OrderedDictionary<string, object?> y) =>
            x.Count == y.Count && x.All(p => y.TryGetValue(p.Key, out object? other) && AreEqual(p.Value, other)),
        _ => ReferenceEquals(a, b),
    };

    /// <summary>Python's ordering for &lt; &lt;= &gt; &gt;=: numbers by value, str by code point, lists item by item.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            return a is double || b is double ? ToDouble(a).CompareTo(ToDouble(b)) : ToLong(a).CompareTo(ToLong(b));
        }
        if (a is string x && b is string y)
        {
            return CompareCodePoints(x, y);
        }
        if (a is List<object?> left && b is List<object?> right)
        {
            for (int i = 0; i < Math.Min(left.Count, right.Count); i++)
            {
                if (!AreEqual(left[i], right[i]))
                {
                    return Compare(left[i], right[i], op);
                }
            }
            return left.Count.CompareTo(right.Count);
        }
        if (a is Undefined u)
        {
            throw u.Error();
        }
        if (b is Undefined v)
        {
            throw v.Error();
        }
        throw new PyException($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static int CompareCodePoints(string x, string y)
    {
        var left = x.EnumerateRunes();
        var right = y.EnumerateRunes();
        while (true)
        {
            bool hasLeft = left.MoveNext(), hasRight = right.MoveNext();
            if (!hasLeft || !hasRight)
            {
                return hasLeft.CompareTo(hasRight);
            }
            if (left.Current != right.Current)
            {
                return left.Current.Value.CompareTo(right.Current.Value);
            }
        }
    }

    public static IEnumerable<object?> Iterate(object? value) => value switch
    {
        List<object?> list => list,
        OrderedDictionary<string, object?> dict => dict.Keys.Cast<object?>(),
        string s => PyString.CodePoints(s),
        Undefined => [],
        _ => throw new PyException($"'{TypeName(value)}' object is not iterable"),
    };

    public static long Length(object? value) => value switch
    {
        string s => PyString.Length(s),
        List<object?> list => list.Count,
        OrderedDictionary<string, object?> dict => dict.Count,
        Undefined => 0,
        _ => throw new PyException($"object of type '{TypeName(value)}' has no len()"),
    };

    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal) : throw new PyException($"'in <string>' requires string as left operand, not {TypeName(item)}"),
        List<object?> list => list.Any(x => AreEqual(x, item)),
        OrderedDictionary<string, object?> dict => item is string key && dict.ContainsKey(key),
        Undefined => false,
        _ => throw new PyException($"argument of type '{TypeName(container)}' is not iterable"),
    };

    public static object? Add(object? a, object? b) => (a, b) switch
    {
        (string x, string y) => x + y,
        (List<object?> x, List<object?> y) => new List<object?>([.. x, .. y]),
        _ when IsNumber(a) && IsNumber(b) => a is double || b is double ? ToDouble(a) + ToDouble(b) : (object)checked(ToLong(a) + ToLong(b)),
        _ => throw Unsupported("+", a, b),
    };

    public static object? Arithmetic(string op, object? a, object? b)
    {
        if (op == "*" && (a is string || a is List<object?> || b is string || b is List<object?>))
        {
            return Repeat(a, b);
        }
        if (!IsNumber(a) || !IsNumber(b))
        {
            throw Unsupported(op, a, b);
        }
        bool integers = a is not double && b is not double;
        if (op is "/" or "//" or "%" && ToDouble(b) == 0)
        {
            throw new PyException(op == "/" ? "division by zero" : "integer division or modulo by zero");
        }
        // Each arm boxes explicitly: a conditional of long and double would make every result a double.
        return op switch
        {
            "-" => integers ? checked(ToLong(a) - ToLong(b)) : (object)(ToDouble(a) - ToDouble(b)),
            "*" => integers ? checked(ToLong(a) * ToLong(b)) : (object)(ToDouble(a) * ToDouble(b)),
            "/" => ToDouble(a) / ToDouble(b),
            "//" => integers ? FloorDivide(ToLong(a), ToLong(b)) : (object)Math.Floor(ToDouble(a) / ToDouble(b)),
            "%" => integers ? ToLong(a) - ToLong(b) * FloorDivide(ToLong(a), ToLong(b)) : (object)(ToDouble(a) - ToDouble(b) * Math.Floor(ToDouble(a) / ToDouble(b))),
            _ => integers && ToLong(b) >= 0 ? IntegerPower(ToLong(a), ToLong(b)) : (object)Math.Pow(ToDouble(a), ToDouble(b)),
        };
    }

    private static long FloorDivide(long a, long b) => a / b - (a % b != 0 && (a < 0) != (b < 0) ? 1 : 0);

    private static long IntegerPower(long value, long exponent)
    {
        long result = 1;
        for (long i = 0; i < exponent; i++)
        {
            result = checked(result * value);
        }
        return result;
    }

    private static object? Repeat(object? a, object? b)
    {
        (object? sequence, object? count) = a is string or List<object?> ? (a, b) : (b, a);
        if (count is not (long or bool))
        {
            throw Unsupported("*", a, b);
        }
        int times = (int)Math.Max(0, ToLong(count));
        return sequence switch
        {
            string s => string.Concat(Enumerable.Repeat(s, times)),
            List<object?> list => Enumerable.Repeat(list, times).SelectMany(x => x).ToList(),
            _ => throw Unsupported("*", a, b),
        };
    }

    public static object? Negate(object? value) => value switch
    {
        bool or long => (object)checked(-ToLong(value)),
        double d => -d,
        _ => throw new PyException($"bad operand type for unary -: '{TypeName(value)}'"),
    };

    private static PyException Unsupported(string op, object? a, object? b) =>
        a is Undefined u ? u.Error()
        : b is Undefined v ? v.Error()
        : new PyException($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");

    /// <summary>Python's slice semantics on a list or a str (by code point).</summary>
    public static object? Slice(object? target, long? start, long? stop, long? step)
    {
        long stride = step ?? 1;
        if (stride == 0)
        {
            throw new PyException("slice step cannot be zero");
        }
        List<object?> items = target switch
        {
            List<object?> list => list,
            string s => PyString.CodePoints(s).Cast<object?>().ToList(),
            Undefined u => throw u.Error(),
            _ => throw new PyException($"'{TypeName(target)}' object is not subscriptable"),
        };
        long n = items.Count;
        long Clamp(long? index, long fallback, long low, long high)
        {
            if (index is not long i)
            {
                return fallback;
            }
            i = i < 0 ? i + n : i;
            return Math.Clamp(i, low, high);
        }
        var picked = new List<object?>();
        if (stride > 0)
        {
            for (long i = Clamp(start, 0, 0, n), end = Clamp(stop, n, 0, n); i < end; i += stride)
            {
                picked.Add(items[(int)i]);
            }
        }
        else
        {
            for (long i = Clamp(start, n - 1, -1, n - 1), end = Clamp(stop, -1, -1, n - 1); i > end; i += stride)
            {
                picked.Add(items[(int)i]);
            }
        }
        return target is string ? string.Concat(picked.Cast<string>()) : picked;
    }
}
