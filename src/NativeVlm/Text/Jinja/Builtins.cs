using System.Globalization;
using System.Text;

namespace NativeVlm.Text.Jinja;

/// <summary>Evaluated call arguments, bound to a builtin's parameters by position or name as Python does.</summary>
internal sealed class CallArguments(List<object?> positional, Dictionary<string, object?> named)
{
    public List<object?> Positional => positional;

    public Dictionary<string, object?> Named => named;

    /// <summary>Checks the call against the parameter list; returns the values in parameter order (missing as <paramref name="fallbacks"/>).</summary>
    public object?[] Bind(string function, string[] parameters, object?[] fallbacks, int required = 0)
    {
        if (positional.Count > parameters.Length)
        {
            throw new PyException($"{function}() takes at most {parameters.Length} argument(s) ({positional.Count} given)");
        }
        foreach (string name in named.Keys.Where(name => !parameters.Contains(name)))
        {
            throw new PyException($"{function}() got an unexpected keyword argument '{name}'");
        }
        var values = new object?[parameters.Length];
        for (int i = 0; i < parameters.Length; i++)
        {
            bool byName = named.TryGetValue(parameters[i], out object? value);
            if (i < positional.Count && byName)
            {
                throw new PyException($"{function}() got multiple values for argument '{parameters[i]}'");
            }
            if (i >= positional.Count && !byName && i < required)
            {
                throw new PyException($"{function}() missing required argument '{parameters[i]}'");
            }
            values[i] = i < positional.Count ? positional[i] : byName ? value : fallbacks[i];
        }
        return values;
    }
}

/// <summary>
/// The filters, tests, methods and global functions the supported templates use, with Jinja2's and
/// Python's behavior (and transformers' tojson and raise_exception). Any other name is an error that
/// names it.
/// </summary>
internal static class Builtins
{
    /// <summary>Python's attributes of str, dict and list: they are methods, not items (<c>message.items</c> is dict.items).</summary>
    private static readonly HashSet<string> StrAttributes =
    [
        "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format", "format_map",
        "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric",
        "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "maketrans", "partition",
        "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split",
        "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill",
    ];

    private static readonly HashSet<string> DictAttributes =
        ["clear", "copy", "fromkeys", "get", "items", "keys", "pop", "popitem", "setdefault", "update", "values"];

    private static readonly HashSet<string> ListAttributes =
        ["append", "clear", "copy", "count", "extend", "index", "insert", "pop", "remove", "reverse", "sort"];

    public static readonly Dictionary<string, GlobalFunction> Globals = new()
    {
        ["range"] = new GlobalFunction("range"),
        ["namespace"] = new GlobalFunction("namespace"),
        ["raise_exception"] = new GlobalFunction("raise_exception"),
    };

    /// <summary>Jinja's getattr (<c>value.name</c>): a Python attribute first, then the item of that name.</summary>
    public static object? GetAttribute(object? target, string name)
    {
        switch (target)
        {
            case Undefined u:
                throw u.Error();
            case string s:
                return StrAttributes.Contains(name) ? new BoundMethod(s, name) : Missing(target, name);
            case OrderedDictionary<string, object?> dict:
                return DictAttributes.Contains(name) ? new BoundMethod(dict, name)
                    : dict.TryGetValue(name, out object? value) ? value
                    : Missing(target, name);
            case List<object?> list:
                return ListAttributes.Contains(name) ? new BoundMethod(list, name) : Missing(target, name);
            case Namespace ns:
                return ns.Attributes.TryGetValue(name, out object? attribute) ? attribute : Missing(target, name);
            case LoopState loop:
                return loop.Property(name);
            default:
                return Missing(target, name);
        }
    }

    /// <summary>Jinja's getitem (<c>value[key]</c>): the item first, then, for a string key, the attribute.</summary>
    public static object? GetItem(object? target, object? key)
    {
        switch (target)
        {
            case Undefined u:
                throw u.Error();
            case OrderedDictionary<string, object?> dict when key is string k && dict.TryGetValue(k, out object? value):
                return value;
            case List<object?> list when key is long or bool:
                return ElementAt(list, Py.ToLong(key), target);
            case string s when key is long or bool:
                return ElementAt(PyString.CodePoints(s).Cast<object?>().ToList(), Py.ToLong(key), target);
        }
        return key is string name ? GetAttribute(target, name) : new Undefined($"'{Py.TypeName(target)} object' has no element {Py.Repr(key)}");
    }

    private static object? ElementAt(List<object?> items, long index, object? target)
    {
        long at = index < 0 ? index + items.Count : index;
        return at >= 0 && at < items.Count ? items[(int)at] : new Undefined($"'{Py.TypeName(target)} object' has no element {index}");
    }

    private static Undefined Missing(object? target, string name) => new($"'{Py.TypeName(target)} object' has no attribute '{name}'");

    public static object? CallGlobal(GlobalFunction function, CallArguments arguments)
    {
        switch (function.Name)
        {
            case "range":
                List<object?> bounds = arguments.Positional;
                if (arguments.Named.Count > 0 || bounds.Count is < 1 or > 3)
                {
                    throw new PyException("range() takes 1 to 3 positional arguments");
                }
                (long start, long stop) = bounds.Count == 1 ? (0, Py.ToLong(bounds[0])) : (Py.ToLong(bounds[0]), Py.ToLong(bounds[1]));
                long step = bounds.Count == 3 ? Py.ToLong(bounds[2]) : 1;
                if (step == 0)
                {
                    throw new PyException("range() arg 3 must not be zero");
                }
                var numbers = new List<object?>();
                for (long i = start; step > 0 ? i < stop : i > stop; i += step)
                {
                    numbers.Add(i);
                }
                return numbers;
            case "namespace":
                var ns = new Namespace();
                if (arguments.Positional.Count > 1)
                {
                    throw new PyException("namespace() takes at most one positional argument (a dict)");
                }
                object? initial = arguments.Positional.FirstOrDefault();
                if (initial is OrderedDictionary<string, object?> mapping)
                {
                    foreach ((string key, object? value) in mapping)
                    {
                        ns.Attributes[key] = value;
                    }
                }
                else if (initial is not null)
                {
                    throw new PyException($"namespace() takes a dict, not '{Py.TypeName(initial)}'");
                }
                foreach ((string key, object? value) in arguments.Named)
                {
                    ns.Attributes[key] = value;
                }
                return ns;
            default:
                object? message = arguments.Bind("raise_exception", ["message"], [null], required: 1)[0];
                throw new PyException($"raise_exception: {Py.Str(message)}");
        }
    }

    public static object? CallMethod(BoundMethod method, CallArguments arguments) => method.Target switch
    {
        string s => CallStrMethod(s, method.Name, arguments),
        OrderedDictionary<string, object?> dict => CallDictMethod(dict, method.Name, arguments),
        _ => throw new PyException($"the {Py.TypeName(method.Target)} method '{method.Name}' is not supported (templates cannot change values)"),
    };

    private static object? CallStrMethod(string s, string name, CallArguments arguments)
    {
        object?[] a;
        switch (name)
        {
            case "startswith":
            case "endswith":
                a = arguments.Bind(name, ["prefix", "start", "end"], [null, null, null], required: 1);
                string part = a[0] as string ?? throw new PyException($"{name} first arg must be str, not {Py.TypeName(a[0])}");
                string window = (string)Py.Slice(s, a[1] is null ? null : Py.ToLong(a[1]), a[2] is null ? null : Py.ToLong(a[2]), null)!;
                return name == "startswith" ? window.StartsWith(part, StringComparison.Ordinal) : window.EndsWith(part, StringComparison.Ordinal);
            case "split":
                a = arguments.Bind(name, ["sep", "maxsplit"], [null, -1L]);
                try
                {
                    return PyString.Split(s, OptionalString(name, a[0]), (int)Py.ToLong(a[1]));
                }
                catch (ArgumentException e)
                {
                    throw new PyException(e.Message);
                }
            case "strip":
            case "lstrip":
            case "rstrip":
                a = arguments.Bind(name, ["chars"], [null]);
                return PyString.Strip(s, OptionalString(name, a[0]), left: name != "rstrip", right: name != "lstrip");
            case "replace":
                a = arguments.Bind(name, ["old", "new", "count"], [null, null, -1L], required: 2);
                return Replace(s, RequiredString(name, a[0]), RequiredString(name, a[1]), Py.ToLong(a[2]));
            case "upper":
                arguments.Bind(name, [], []);
                return s.ToUpperInvariant();
            case "lower":
                arguments.Bind(name, [], []);
                return s.ToLowerInvariant();
            case "capitalize":
                arguments.Bind(name, [], []);
                return PyString.Capitalize(s);
            case "join":
                a = arguments.Bind(name, ["iterable"], [null], required: 1);
                return string.Join(s, Py.Iterate(a[0]).Select(item => item as string ?? throw new PyException($"sequence item: expected str instance, {Py.TypeName(item)} found")));
            default:
                throw new PyException($"the str method '{name}' is not supported");
        }
    }

    private static object? CallDictMethod(OrderedDictionary<string, object?> dict, string name, CallArguments arguments)
    {
        switch (name)
        {
            case "items":
                arguments.Bind(name, [], []);
                return dict.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList();
            case "keys":
                arguments.Bind(name, [], []);
                return dict.Keys.Cast<object?>().ToList();
            case "values":
                arguments.Bind(name, [], []);
                return dict.Values.ToList();
            case "get":
                object?[] a = arguments.Bind(name, ["key", "default"], [null, null], required: 1);
                return a[0] is string key && dict.TryGetValue(key, out object? value) ? value : a[1];
            default:
                throw new PyException($"the dict method '{name}' is not supported (templates cannot change values)");
        }
    }

    private static string? OptionalString(string function, object? value) =>
        value is null or string ? (string?)value : throw new PyException($"{function}() argument must be str or None, not {Py.TypeName(value)}");

    private static string RequiredString(string function, object? value) =>
        value as string ?? throw new PyException($"{function}() argument must be str, not {Py.TypeName(value)}");

    private static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0)
        {
            return old.Length == 0 ? InsertEverywhere(s, replacement) : s.Replace(old, replacement, StringComparison.Ordinal);
        }
        var result = new StringBuilder();
        int from = 0;
        for (long done = 0; done < count && old.Length > 0; done++)
        {
            int at = s.IndexOf(old, from, StringComparison.Ordinal);
            if (at < 0)
            {
                break;
            }
            result.Append(s, from, at - from).Append(replacement);
            from = at + old.Length;
        }
        return result.Append(s, from, s.Length - from).ToString();
    }

    private static string InsertEverywhere(string s, string insert) =>
        insert + string.Concat(PyString.CodePoints(s).Select(point => point + insert));

    public static object? ApplyFilter(string name, object? value, CallArguments arguments)
    {
        object?[] a;
        switch (name)
        {
            case "length":
            case "count":
                arguments.Bind(name, [], []);
                return Py.Length(value);
            case "string":
                arguments.Bind(name, [], []);
                return Py.Str(value);
            case "trim":
                a = arguments.Bind(name, ["chars"], [null]);
                return PyString.Strip(Py.Str(value), OptionalString(name, a[0]), left: true, right: true);
            case "lower":
                arguments.Bind(name, [], []);
                return Py.Str(value).ToLowerInvariant();
            case "upper":
                arguments.Bind(name, [], []);
                return Py.Str(value).ToUpperInvariant();
            case "capitalize":
                arguments.Bind(name, [], []);
                return PyString.Capitalize(Py.Str(value));
            case "title":
                arguments.Bind(name, [], []);
                return PyString.Title(Py.Str(value));
            case "replace":
                a = arguments.Bind(name, ["old", "new", "count"], [null, null, null], required: 2);
                return Replace(Py.Str(value), Py.Str(a[0]), Py.Str(a[1]), a[2] is null ? -1 : Py.ToLong(a[2]));
            case "first":
                arguments.Bind(name, [], []);
                return Py.Iterate(value).Take(1).DefaultIfEmpty(new Undefined("No first item, sequence was empty.")).First();
            case "last":
                arguments.Bind(name, [], []);
                List<object?> all = Py.Iterate(value).ToList();
                return all.Count > 0 ? all[^1] : new Undefined("No last item, sequence was empty.");
            case "join":
                a = arguments.Bind(name, ["d", "attribute"], ["", null]);
                if (a[1] is not null)
                {
                    throw new PyException("join(attribute=...) is not supported");
                }
                return string.Join(Py.Str(a[0]), Py.Iterate(value).Select(Py.Str));
            case "default":
            case "d":
                a = arguments.Bind(name, ["default_value", "boolean"], ["", false]);
                return value is Undefined || (Py.Truthy(a[1]) && !Py.Truthy(value)) ? a[0] : value;
            case "list":
                arguments.Bind(name, [], []);
                return Py.Iterate(value).ToList();
            case "reverse":
                arguments.Bind(name, [], []);
                return value is string text ? string.Concat(PyString.CodePoints(text).AsEnumerable().Reverse()) : Py.Iterate(value).Reverse().ToList();
            case "items":
                arguments.Bind(name, [], []);
                return value switch
                {
                    Undefined => new List<object?>(),
                    OrderedDictionary<string, object?> dict => dict.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList(),
                    _ => throw new PyException($"items filter: can only get item pairs from a mapping, not {Py.TypeName(value)}"),
                };
            case "int":
                a = arguments.Bind(name, ["default", "base"], [0L, 10L]);
                if (Py.ToLong(a[1]) != 10)
                {
                    throw new PyException("int(base=...) other than 10 is not supported");
                }
                return ToInt(value, a[0]);
            case "float":
                a = arguments.Bind(name, ["default"], [0.0]);
                return ToFloat(value, a[0]);
            case "abs":
                arguments.Bind(name, [], []);
                return value is double d ? Math.Abs(d) : (object)Math.Abs(Py.ToLong(value));
            case "tojson":
                a = arguments.Bind(name, ["ensure_ascii", "indent", "separators", "sort_keys"], [false, null, null, false]);
                if (Py.Truthy(a[0]) || a[2] is not null)
                {
                    throw new PyException("tojson(ensure_ascii=True) and tojson(separators=...) are not supported");
                }
                return Json.Dumps(value, a[1] is null ? null : (int)Py.ToLong(a[1]), Py.Truthy(a[3]));
            default:
                throw new PyException($"the filter '{name}' is not supported");
        }
    }

    private static object? ToInt(object? value, object? fallback) => value switch
    {
        bool or long => Py.ToLong(value),
        double d => (long)Math.Truncate(d),
        string s when long.TryParse(s.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long parsed) => parsed,
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) => (long)Math.Truncate(parsed),
        _ => fallback,
    };

    private static object? ToFloat(object? value, object? fallback) => value switch
    {
        bool or long or double => Py.ToDouble(value),
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) => parsed,
        _ => fallback,
    };

    private static readonly HashSet<string> TestsWithArgument = ["eq", "equalto", "ne", "in", "divisibleby"];

    private static readonly HashSet<string> TestsWithoutArgument =
        ["defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true", "false", "mapping", "sequence", "iterable", "odd", "even"];

    public static bool ApplyTest(string name, object? value, CallArguments arguments)
    {
        if (!TestsWithArgument.Contains(name) && !TestsWithoutArgument.Contains(name))
        {
            throw new PyException($"the test '{name}' is not supported");
        }
        object? other = null;
        if (TestsWithArgument.Contains(name))
        {
            other = arguments.Bind(name, ["other"], [null], required: 1)[0];
        }
        else
        {
            arguments.Bind(name, [], []);
        }
        return name switch
        {
            "defined" => value is not Undefined,
            "undefined" => value is Undefined,
            "none" => value is null,
            "string" => value is string,
            "number" => Py.IsNumber(value),
            "integer" => value is long,
            "float" => value is double,
            "boolean" => value is bool,
            "true" => value is true,
            "false" => value is false,
            "mapping" => value is OrderedDictionary<string, object?>,
            // Undefined counts: Jinja's tests find len() and __getitem__/__iter__ on it.
            "sequence" or "iterable" => value is string or List<object?> or OrderedDictionary<string, object?> or Undefined,
            "odd" => Py.ToLong(value) % 2 != 0,
            "even" => Py.ToLong(value) % 2 == 0,
            "divisibleby" => Py.ToLong(value) % Py.ToLong(other) == 0,
            "eq" or "equalto" => Py.AreEqual(value, other),
            "ne" => !Py.AreEqual(value, other),
            _ => Py.Contains(other, value),
        };
    }
}
