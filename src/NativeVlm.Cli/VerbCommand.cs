using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using CommandLine;

namespace NativeVlm.Cli;

/// <summary>
/// One verb of the console host: its options class (a [Verb]), the flags that class declares, read once
/// by reflection for the argument normaliser and the error messages, and the command it runs.
/// </summary>
public sealed class VerbCommand
{
    private const string DeviceOptionName = "device";

    private readonly Func<object, int> _run;

    /// <summary>The property of --device, when the verb has one.</summary>
    private readonly PropertyInfo? _device;

    private VerbCommand(string name, Type optionsType, IReadOnlyDictionary<string, Type> options, IReadOnlyList<string> values,
        PropertyInfo? device, Func<object, int> run)
    {
        Name = name;
        OptionsType = optionsType;
        Options = options;
        Values = values;
        _device = device;
        _run = run;
    }

    /// <summary>The verb as typed: train, compare, …</summary>
    public string Name { get; }

    public Type OptionsType { get; }

    /// <summary>Long option name (snake_case, without the dashes) → the property's type.</summary>
    public IReadOnlyDictionary<string, Type> Options { get; }

    /// <summary>Meta names of the positional values, in order (train's objective).</summary>
    public IReadOnlyList<string> Values { get; }

    /// <summary>
    /// A flag is boolean when its property is bool?: CommandLineParser then reads a value
    /// (--use_dora false), and <see cref="ArgumentNormalizer"/> supplies "true" for a bare --use_dora.
    /// </summary>
    public bool IsBoolean(string option) => Options.TryGetValue(option, out Type? type) && type == typeof(bool?);

    /// <summary>A flag is a list when its property is a sequence other than a string (--data a b, --image a b).</summary>
    public bool IsList(string option) =>
        Options.TryGetValue(option, out Type? type) && type != typeof(string) && typeof(System.Collections.IEnumerable).IsAssignableFrom(type);

    /// <summary>
    /// Runs the command once its --device, on every verb that has one, is found well formed
    /// (<see cref="DeviceOption.Parse"/>): a bad device is refused before the command reads anything.
    /// </summary>
    public int Run(object options)
    {
        if (_device?.GetValue(options) is string device)
        {
            DeviceOption.Parse(device);
        }
        return _run(options);
    }

    /// <summary>The verb of options class <typeparamref name="TOptions"/>, running <paramref name="run"/>.</summary>
    public static VerbCommand Of<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicProperties)] TOptions>(Func<TOptions, int> run)
    {
        Type type = typeof(TOptions);
        VerbAttribute verb = type.GetCustomAttribute<VerbAttribute>()
            ?? throw new InvalidOperationException($"{type.Name} has no [Verb] attribute");
        var options = new Dictionary<string, Type>();
        var values = new List<(int Index, string Name)>();
        PropertyInfo? device = null;
        foreach (PropertyInfo property in type.GetProperties())
        {
            if (property.GetCustomAttribute<OptionAttribute>() is { } option)
            {
                options.Add(option.LongName, property.PropertyType);
                device = option.LongName == DeviceOptionName ? property : device;
            }
            else if (property.GetCustomAttribute<ValueAttribute>() is { } value)
            {
                values.Add((value.Index, value.MetaName));
            }
        }
        return new VerbCommand(verb.Name, type, options, values.OrderBy(v => v.Index).Select(v => v.Name).ToList(), device, o => run((TOptions)o));
    }
}
