using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using NativeVlm.Models;

namespace NativeVlm.Adapters;

/// <summary>How lora_A starts (init_lora_weights); lora_B starts at zero unless <see cref="Off"/>.</summary>
public enum LoraInit
{
    /// <summary>true: kaiming_uniform_(a=√5), U(−1/√in, 1/√in), as nn.Linear's default.</summary>
    Kaiming,

    /// <summary>"gaussian": N(0, (1/r)²).</summary>
    Gaussian,

    /// <summary>false: nn.Linear's default init for both A and B, so the adapter starts non-zero (for tests).</summary>
    Off,
}

/// <summary>
/// PEFT v0.13.2's LoraConfig as adapter_config.json holds it. Every field PEFT writes is kept —
/// as read (a number keeps its digits) or with PEFT's default — and written back the way PEFT
/// writes it (<see cref="PythonJson"/>), so load → save is byte-identical. The fields that change
/// the computation are typed; a value NativeVlm does not implement (bias other than "none",
/// fan_in_fan_out, layers_to_transform, modules_to_save, LoftQ/PiSSA/OLoRA init, …) is a
/// <see cref="ConfigException"/> naming the field.
/// </summary>
public sealed class LoraConfig
{
    public const string FileName = "adapter_config.json";

    private readonly JsonObject _fields;
    private readonly List<(Regex Key, string Name)> _patternKeys;

    private LoraConfig(JsonObject fields, string source)
    {
        _fields = fields;
        Source = source;
        Reader f = new(fields, source);

        if (f.String("peft_type") != "LORA")
        {
            throw f.Unsupported("peft_type", "LORA");
        }
        R = f.PositiveInt("r");
        LoraAlpha = f.Number("lora_alpha");
        LoraDropout = f.Number("lora_dropout");
        if (LoraDropout is < 0 or >= 1)
        {
            throw f.Invalid("lora_dropout", "must be in [0, 1)");
        }
        UseDora = f.Bool("use_dora");
        UseRslora = f.Bool("use_rslora");
        InitLoraWeights = fields["init_lora_weights"] switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.True => LoraInit.Kaiming,
            JsonValue v when v.GetValueKind() == JsonValueKind.False => LoraInit.Off,
            JsonValue v when v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().ToLowerInvariant() == "gaussian" => LoraInit.Gaussian,
            // PiSSA, OLoRA and LoftQ rewrite the base weights at init, which a loaded adapter relies on.
            _ => throw f.Unsupported("init_lora_weights", "true, false or \"gaussian\""),
        };
        TargetModules = fields["target_modules"] switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.String => TargetModules.FromPattern(v.GetValue<string>()),
            JsonArray a when a.Count > 0 && a.All(e => e?.GetValueKind() == JsonValueKind.String) =>
                TargetModules.FromNames(a.Select(e => e!.GetValue<string>())),
            null => throw f.Invalid("target_modules", "is null; PEFT has no default target modules for Idefics3"),
            _ => throw f.Invalid("target_modules", "must be a regular expression or a list of module names"),
        };
        RankPattern = f.Pattern("rank_pattern", rank => rank > 0 && rank == Math.Floor(rank));
        AlphaPattern = f.Pattern("alpha_pattern", _ => true);
        // PEFT looks a module up as re.match(rf".*\.{key}$", name) over rank_pattern's keys, then alpha_pattern's.
        _patternKeys = fields["rank_pattern"]!.AsObject().Concat(fields["alpha_pattern"]!.AsObject())
            .Select(p => (new Regex($@"\A(?:.*\.{p.Key}$)", RegexOptions.CultureInvariant), p.Key)).ToList();

        f.Require("bias", JsonValue.Create("none"), "\"none\": trainable biases are not implemented");
        f.Require("fan_in_fan_out", JsonValue.Create(false), "false (Conv1D weights are not implemented)");
        f.Require("modules_to_save", null, "null: fully trained extra modules are not implemented");
        f.Require("layers_to_transform", null, "null");
        f.Require("layers_pattern", null, "null");
        f.Require("layer_replication", null, "null");
        f.Require("megatron_config", null, "null");
        f.Require("loftq_config", new JsonObject(), "{}");
        // Fields of later PEFT versions that change the adapter.
        f.RequireIfPresent("lora_bias", JsonValue.Create(false), "false");
        f.RequireIfPresent("exclude_modules", null, "null");
    }

    /// <summary>The file this config was read from, or a description of where it was made; errors name it.</summary>
    public string Source { get; }

    public int R { get; }

    public double LoraAlpha { get; }

    /// <summary>Dropout probability on the adapter's input while training.</summary>
    public double LoraDropout { get; }

    public bool UseDora { get; }

    /// <summary>Scaling alpha / √r instead of alpha / r.</summary>
    public bool UseRslora { get; }

    public LoraInit InitLoraWeights { get; }

    public TargetModules TargetModules { get; }

    /// <summary>Per-module ranks, keyed by a pattern that must match the end of the module name after a dot.</summary>
    public IReadOnlyDictionary<string, double> RankPattern { get; }

    /// <summary>Per-module alphas, keyed as <see cref="RankPattern"/>.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; }

    /// <summary>
    /// A config as PEFT's LoraConfig(...) with these arguments would save it (inference_mode true,
    /// every other field at its default).
    /// </summary>
    public static LoraConfig Create(TargetModules targetModules, int r = 8, double loraAlpha = 8, double loraDropout = 0.0,
        bool useDora = false, bool useRslora = false, LoraInit initLoraWeights = LoraInit.Kaiming,
        string? baseModelNameOrPath = null, string? taskType = null)
    {
        JsonObject fields = Defaults();
        fields["r"] = r;
        fields["lora_alpha"] = loraAlpha == Math.Floor(loraAlpha) && Math.Abs(loraAlpha) < int.MaxValue ? JsonValue.Create((int)loraAlpha) : JsonValue.Create(loraAlpha);
        fields["lora_dropout"] = loraDropout;
        fields["use_dora"] = useDora;
        fields["use_rslora"] = useRslora;
        fields["init_lora_weights"] = initLoraWeights switch
        {
            LoraInit.Kaiming => JsonValue.Create(true),
            LoraInit.Off => JsonValue.Create(false),
            _ => JsonValue.Create("gaussian"),
        };
        fields["target_modules"] = targetModules.ToJson();
        fields["base_model_name_or_path"] = baseModelNameOrPath;
        fields["task_type"] = taskType;
        return new LoraConfig(fields, "LoraConfig");
    }

    /// <summary>An adapter_config.json, or a folder holding one.</summary>
    public static LoraConfig Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        return Parse(File.ReadAllText(file), file);
    }

    /// <summary>The text of an adapter_config.json; fields it lacks take PEFT's defaults.</summary>
    public static LoraConfig Parse(string json, string source)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ConfigException(source, "", $"{source}: not valid JSON ({e.Message})");
        }
        if (root is not JsonObject file)
        {
            throw new ConfigException(source, "", $"{source}: the file holds a JSON {root?.GetValueKind()}, not an object");
        }
        JsonObject fields = Defaults();
        foreach ((string key, JsonNode? value) in file)
        {
            fields[key] = value?.DeepClone();
        }
        return new LoraConfig(fields, source);
    }

    /// <summary>PEFT v0.13.2's LoraConfig.to_dict() with default arguments, as save_pretrained writes it.</summary>
    private static JsonObject Defaults() => new()
    {
        ["alpha_pattern"] = new JsonObject(),
        ["auto_mapping"] = null,
        ["base_model_name_or_path"] = null,
        ["bias"] = "none",
        ["fan_in_fan_out"] = false,
        ["inference_mode"] = true,
        ["init_lora_weights"] = true,
        ["layer_replication"] = null,
        ["layers_pattern"] = null,
        ["layers_to_transform"] = null,
        ["loftq_config"] = new JsonObject(),
        ["lora_alpha"] = 8,
        ["lora_dropout"] = 0.0,
        ["megatron_config"] = null,
        ["megatron_core"] = "megatron.core",
        ["modules_to_save"] = null,
        ["peft_type"] = "LORA",
        ["r"] = 8,
        ["rank_pattern"] = new JsonObject(),
        ["revision"] = null,
        ["target_modules"] = null,
        ["task_type"] = null,
        ["use_dora"] = false,
        ["use_rslora"] = false,
    };

    /// <summary>The file's text exactly as PEFT's save_pretrained writes it (json.dumps, indent 2, sorted keys, no final newline).</summary>
    public string ToJson() => PythonJson.Serialize(_fields);

    /// <summary>Writes <see cref="FileName"/> into <paramref name="directory"/>.</summary>
    public void Save(string directory) => File.WriteAllText(Path.Combine(directory, FileName), ToJson());

    /// <summary>
    /// Rank and alpha of one module, as LoraModel._create_and_replace picks them: the first key of
    /// rank_pattern then alpha_pattern that matches the end of the name after a dot (else the name
    /// itself) is looked up in both, falling back to r and lora_alpha.
    /// </summary>
    public (int Rank, double Alpha) RankAndAlpha(string moduleName)
    {
        string key = _patternKeys.FirstOrDefault(p => p.Key.IsMatch(moduleName)).Name ?? moduleName;
        return (RankPattern.TryGetValue(key, out double rank) ? (int)rank : R,
            AlphaPattern.TryGetValue(key, out double alpha) ? alpha : LoraAlpha);
    }

    /// <summary>alpha / r, or alpha / √r with rsLoRA (computed in double, as Python does).</summary>
    public double Scaling(int rank, double alpha) => UseRslora ? alpha / Math.Sqrt(rank) : alpha / rank;

    /// <summary>Typed reads of the fields with errors that name the file and the field.</summary>
    private readonly struct Reader(JsonObject fields, string source)
    {
        public string? String(string key) =>
            fields[key] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Invalid(key, "must be a string");

        public bool Bool(string key) => fields[key]?.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Invalid(key, "must be true or false"),
        };

        public double Number(string key) => AsNumber(fields[key]) ?? throw Invalid(key, "must be a number");

        /// <summary>The number a node holds, whether read from a file or set from C# (an int node does not convert by GetValue&lt;double&gt;).</summary>
        private static double? AsNumber(JsonNode? node) =>
            node?.GetValueKind() == JsonValueKind.Number ? double.Parse(node.ToJsonString(), CultureInfo.InvariantCulture) : null;

        public int PositiveInt(string key)
        {
            double value = Number(key);
            return value > 0 && value == Math.Floor(value) && value <= int.MaxValue ? (int)value : throw Invalid(key, "must be a positive integer");
        }

        public IReadOnlyDictionary<string, double> Pattern(string key, Func<double, bool> valid)
        {
            if (fields[key] is not JsonObject obj || obj.Any(p => AsNumber(p.Value) is not { } value || !valid(value)))
            {
                throw Invalid(key, "must map module-name patterns to numbers (positive integers for ranks)");
            }
            return obj.ToDictionary(p => p.Key, p => AsNumber(p.Value)!.Value);
        }

        public void Require(string key, JsonNode? expected, string supported)
        {
            if (!JsonNode.DeepEquals(fields[key], expected))
            {
                throw Unsupported(key, supported);
            }
        }

        public void RequireIfPresent(string key, JsonNode? expected, string supported)
        {
            if (fields.ContainsKey(key))
            {
                Require(key, expected, supported);
            }
        }

        public ConfigException Invalid(string key, string problem) =>
            new(source, key, $"{source}: {key} = {Show(key)} {problem}");

        public ConfigException Unsupported(string key, string supported) =>
            new(source, key, $"{source}: {key} = {Show(key)} is not supported (expected {supported})");

        private string Show(string key) => fields[key]?.ToJsonString() ?? "null";
    }
}
