using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NativeVlm.Tensors;

namespace NativeVlm.Training;

/// <summary>
/// Training settings under TRL's / transformers' argument names (snake_case, as in a TRL config), with
/// transformers' defaults where it has one. Set from a JSON config (<see cref="FromJson"/>) and then from
/// command-line values (<see cref="Set"/>), both by name; <see cref="Validate"/> rejects bad values
/// naming the field, before any work.
/// </summary>
public sealed class TrainingArguments
{
    public string OutputDir { get; set; } = "";
    public int PerDeviceTrainBatchSize { get; set; } = 8;
    public int PerDeviceEvalBatchSize { get; set; } = 8;
    public int GradientAccumulationSteps { get; set; } = 1;
    public double LearningRate { get; set; } = 5e-5;
    public double NumTrainEpochs { get; set; } = 3.0;
    /// <summary>Optimizer steps to run; -1 (or 0): from num_train_epochs.</summary>
    public long MaxSteps { get; set; } = -1;
    public string LrSchedulerType { get; set; } = "linear";
    public double WarmupRatio { get; set; }
    public long WarmupSteps { get; set; }
    public double MaxGradNorm { get; set; } = 1.0;
    public double AdamBeta1 { get; set; } = 0.9;
    public double AdamBeta2 { get; set; } = 0.999;
    public double AdamEpsilon { get; set; } = 1e-8;
    public double WeightDecay { get; set; }
    public long LoggingSteps { get; set; } = 500;
    /// <summary>Evaluate every this many optimizer steps when there is an eval split; null: logging_steps (transformers' fallback).</summary>
    public long? EvalSteps { get; set; }
    public long SaveSteps { get; set; } = 500;
    /// <summary>Most checkpoints kept in output_dir (oldest removed first); null: all.</summary>
    public int? SaveTotalLimit { get; set; }
    public int Seed { get; set; } = 42;
    public bool GradientCheckpointing { get; set; }
    /// <summary>
    /// transformers' bf16 mixed precision: matmuls, linears, the LM head and attention round their
    /// operands to bf16 and accumulate in fp32 (<see cref="MathMode.Bf16"/>), and the activations kept for
    /// backward are stored as bf16 (<see cref="Context.SavedActivationDType"/>); weights, adapters,
    /// gradients and optimiser states stay f32.
    /// </summary>
    public bool Bf16 { get; set; }

    // DPO (TRL DPOConfig)
    public double Beta { get; set; } = 0.1;
    public IReadOnlyList<string> LossType { get; set; } = ["sigmoid"];
    public IReadOnlyList<double>? LossWeights { get; set; }
    public double LabelSmoothing { get; set; }
    public double? RpoAlpha { get; set; }
    public bool PrecomputeRefLogProbs { get; set; }
    /// <summary>Where precompute_ref_log_probs keeps its cache (ReferenceLogProbCache); null: output_dir/ref_logps.</summary>
    public string? RefLogProbsDir { get; set; }

    // Sample limits (TRL)
    public int? MaxLength { get; set; }
    public int? MaxPromptLength { get; set; }
    public int? MaxCompletionLength { get; set; }
    /// <summary>SFT: loss on assistant turns only; false: the whole text but image tokens (TRL's default).</summary>
    public bool AssistantOnlyLoss { get; set; }

    // LoRA (PEFT LoraConfig, flattened as TRL's ModelConfig does)
    public int LoraR { get; set; } = 8;
    public double LoraAlpha { get; set; } = 8;
    public double LoraDropout { get; set; }
    public bool UseDora { get; set; }
    /// <summary>Module names (suffix match) or "all-linear"; empty: no adapters.</summary>
    public IReadOnlyList<string> LoraTargetModules { get; set; } = [];
    /// <summary>Modules trained in full with everything else frozen ("connector": the stitched-model recipe).</summary>
    public IReadOnlyList<string> TrainModules { get; set; } = [];

    /// <summary>Base weight quantisation: nf4 or none.</summary>
    public string Quant { get; set; } = "none";
    /// <summary>cpu, cuda or cuda:N.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Modules <see cref="TrainModules"/> can name.</summary>
    public static readonly IReadOnlyList<string> TrainableModules = ["connector"];

    /// <summary>Every field's name, as in a config file and on the command line.</summary>
    public static IReadOnlyCollection<string> FieldNames => Setters.Keys;

    private static readonly IReadOnlyList<string> DpoLossTypes = ["sigmoid", "ipo", "hinge", "robust", "bco_pair", "sft"];

    private static readonly Dictionary<string, Action<TrainingArguments, string>> Setters = new()
    {
        ["output_dir"] = (a, v) => a.OutputDir = v,
        ["per_device_train_batch_size"] = (a, v) => a.PerDeviceTrainBatchSize = Int(v),
        ["per_device_eval_batch_size"] = (a, v) => a.PerDeviceEvalBatchSize = Int(v),
        ["gradient_accumulation_steps"] = (a, v) => a.GradientAccumulationSteps = Int(v),
        ["learning_rate"] = (a, v) => a.LearningRate = Number(v),
        ["num_train_epochs"] = (a, v) => a.NumTrainEpochs = Number(v),
        ["max_steps"] = (a, v) => a.MaxSteps = Long(v),
        ["lr_scheduler_type"] = (a, v) => a.LrSchedulerType = v,
        ["warmup_ratio"] = (a, v) => a.WarmupRatio = Number(v),
        ["warmup_steps"] = (a, v) => a.WarmupSteps = Long(v),
        ["max_grad_norm"] = (a, v) => a.MaxGradNorm = Number(v),
        ["adam_beta1"] = (a, v) => a.AdamBeta1 = Number(v),
        ["adam_beta2"] = (a, v) => a.AdamBeta2 = Number(v),
        ["adam_epsilon"] = (a, v) => a.AdamEpsilon = Number(v),
        ["weight_decay"] = (a, v) => a.WeightDecay = Number(v),
        ["logging_steps"] = (a, v) => a.LoggingSteps = Long(v),
        ["eval_steps"] = (a, v) => a.EvalSteps = OptionalLong(v),
        ["save_steps"] = (a, v) => a.SaveSteps = Long(v),
        ["save_total_limit"] = (a, v) => a.SaveTotalLimit = OptionalInt(v),
        ["seed"] = (a, v) => a.Seed = Int(v),
        ["gradient_checkpointing"] = (a, v) => a.GradientCheckpointing = Bool(v),
        ["bf16"] = (a, v) => a.Bf16 = Bool(v),
        ["beta"] = (a, v) => a.Beta = Number(v),
        ["loss_type"] = (a, v) => a.LossType = List(v),
        ["loss_weights"] = (a, v) => a.LossWeights = v.Length == 0 ? null : List(v).Select(Number).ToList(),
        ["label_smoothing"] = (a, v) => a.LabelSmoothing = Number(v),
        ["rpo_alpha"] = (a, v) => a.RpoAlpha = OptionalNumber(v),
        ["precompute_ref_log_probs"] = (a, v) => a.PrecomputeRefLogProbs = Bool(v),
        ["ref_log_probs_dir"] = (a, v) => a.RefLogProbsDir = IsNone(v) ? null : v,
        ["max_length"] = (a, v) => a.MaxLength = OptionalInt(v),
        ["max_prompt_length"] = (a, v) => a.MaxPromptLength = OptionalInt(v),
        ["max_completion_length"] = (a, v) => a.MaxCompletionLength = OptionalInt(v),
        ["assistant_only_loss"] = (a, v) => a.AssistantOnlyLoss = Bool(v),
        ["lora_r"] = (a, v) => a.LoraR = Int(v),
        ["lora_alpha"] = (a, v) => a.LoraAlpha = Number(v),
        ["lora_dropout"] = (a, v) => a.LoraDropout = Number(v),
        ["use_dora"] = (a, v) => a.UseDora = Bool(v),
        ["lora_target_modules"] = (a, v) => a.LoraTargetModules = List(v),
        ["train_modules"] = (a, v) => a.TrainModules = List(v),
        ["quant"] = (a, v) => a.Quant = v,
        ["device"] = (a, v) => a.Device = v,
    };

    /// <summary>
    /// Sets field <paramref name="name"/> from text: numbers in invariant culture, booleans true/false,
    /// lists comma-separated, "" or "none" for an optional field's null.
    /// </summary>
    public void Set(string name, string value)
    {
        if (!Setters.TryGetValue(name, out Action<TrainingArguments, string>? setter))
        {
            throw new ArgumentException($"unknown training argument '{name}'");
        }
        try
        {
            setter(this, value.Trim());
        }
        catch (FormatException e)
        {
            throw new ArgumentException($"{name}: {e.Message}");
        }
    }

    /// <summary>
    /// A JSON object of fields by name (a TRL config's subset); <paramref name="source"/> names it in errors.
    /// An unknown field is an error, so a misspelt one is not silently ignored.
    /// </summary>
    public static TrainingArguments FromJson(string json, string source)
    {
        var arguments = new TrainingArguments();
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{source}: not valid JSON ({e.Message})");
        }
        if (root is not JsonObject fields)
        {
            throw new ArgumentException($"{source}: expected a JSON object of training arguments");
        }
        foreach ((string name, JsonNode? node) in fields)
        {
            try
            {
                arguments.Set(name, JsonText(node));
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"{source}: {e.Message}");
            }
        }
        return arguments;
    }

    public static TrainingArguments Load(string path) => FromJson(File.ReadAllText(path), path);

    /// <summary>Every check that needs no model or data; the error names the field.</summary>
    public void Validate()
    {
        Require(OutputDir.Length > 0, "output_dir", "is required");
        Require(PerDeviceTrainBatchSize >= 1, "per_device_train_batch_size", "must be at least 1");
        Require(PerDeviceEvalBatchSize >= 1, "per_device_eval_batch_size", "must be at least 1");
        Require(GradientAccumulationSteps >= 1, "gradient_accumulation_steps", "must be at least 1");
        Require(LearningRate >= 0 && double.IsFinite(LearningRate), "learning_rate", "must be a finite number ≥ 0");
        Require(MaxSteps > 0 || NumTrainEpochs > 0 && double.IsFinite(NumTrainEpochs), "num_train_epochs",
            "must be positive when max_steps is not set");
        Require(LrSchedulerType is "linear" or "cosine" or "constant" or "constant_with_warmup", "lr_scheduler_type",
            $"'{LrSchedulerType}' is not one of linear, cosine, constant, constant_with_warmup");
        Require(WarmupRatio is >= 0 and <= 1, "warmup_ratio", "must be in [0, 1]");
        Require(WarmupSteps >= 0, "warmup_steps", "must be ≥ 0");
        Require(MaxGradNorm > 0, "max_grad_norm", "must be positive");
        Require(AdamBeta1 is >= 0 and < 1, "adam_beta1", "must be in [0, 1)");
        Require(AdamBeta2 is >= 0 and < 1, "adam_beta2", "must be in [0, 1)");
        Require(AdamEpsilon > 0, "adam_epsilon", "must be positive");
        Require(WeightDecay >= 0, "weight_decay", "must be ≥ 0");
        Require(LoggingSteps >= 1, "logging_steps", "must be at least 1");
        Require(EvalSteps is null or >= 1, "eval_steps", "must be at least 1");
        Require(SaveSteps >= 1, "save_steps", "must be at least 1");
        Require(SaveTotalLimit is null or >= 1, "save_total_limit", "must be at least 1");
        Require(Beta > 0, "beta", "must be positive");
        Require(LossType.Count >= 1, "loss_type", "needs at least one loss");
        foreach (string loss in LossType)
        {
            Require(DpoLossTypes.Contains(loss), "loss_type", $"'{loss}' is not one of {string.Join(", ", DpoLossTypes)}");
        }
        Require(LossWeights == null || LossWeights.Count == LossType.Count, "loss_weights",
            $"has {LossWeights?.Count} weights for {LossType.Count} loss types");
        Require(LabelSmoothing is >= 0 and <= 0.5, "label_smoothing", "must be in [0, 0.5]");
        Require(RpoAlpha is null or >= 0, "rpo_alpha", "must be ≥ 0");
        Require(MaxLength is null or >= 1, "max_length", "must be at least 1");
        Require(MaxPromptLength is null or >= 1, "max_prompt_length", "must be at least 1");
        Require(MaxCompletionLength is null or >= 1, "max_completion_length", "must be at least 1");
        Require(LoraR >= 1, "lora_r", "must be at least 1");
        Require(LoraAlpha > 0, "lora_alpha", "must be positive");
        Require(LoraDropout is >= 0 and < 1, "lora_dropout", "must be in [0, 1)");
        foreach (string module in TrainModules)
        {
            Require(TrainableModules.Contains(module), "train_modules", $"'{module}' is not one of {string.Join(", ", TrainableModules)}");
        }
        Require(LoraTargetModules.Count > 0 || TrainModules.Count > 0, "lora_target_modules",
            "nothing to train: give lora_target_modules (adapters) or train_modules (full training of modules)");
        Require(Quant is "nf4" or "none", "quant", $"'{Quant}' is not one of nf4, none");
        Require(!(Quant == "nf4" && TrainModules.Count > 0), "train_modules",
            "trains full weights, which NF4 base weights cannot be: use quant none");
        Require(Device == "cpu" || Device == "cuda" || Device.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(Device.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out _), "device",
            $"'{Device}' is not cpu, cuda or cuda:N");
    }

    /// <summary>Optimizer steps of the run: max_steps when set, else ceil(num_train_epochs × updates per epoch).</summary>
    public long TotalSteps(long updatesPerEpoch) =>
        MaxSteps > 0 ? MaxSteps : (long)Math.Ceiling(NumTrainEpochs * updatesPerEpoch);

    private static void Require(bool condition, string field, string problem)
    {
        if (!condition)
        {
            throw new ArgumentException($"{field} {problem}");
        }
    }

    private static string JsonText(JsonNode? node) => node switch
    {
        null => "",
        JsonArray array => string.Join(",", array.Select(JsonText)),
        JsonValue value when value.GetValueKind() == JsonValueKind.String => value.GetValue<string>(),
        _ => node.ToJsonString(),
    };

    private static bool IsNone(string v) => v.Length == 0 || v == "none" || v == "null";

    private static double Number(string v) =>
        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
            ? d
            : throw new FormatException($"'{v}' is not a number");

    private static long Long(string v) =>
        long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n)
            ? n
            : throw new FormatException($"'{v}' is not an integer");

    private static int Int(string v) =>
        int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n)
            ? n
            : throw new FormatException($"'{v}' is not an integer");

    private static int? OptionalInt(string v) => IsNone(v) ? null : Int(v);

    private static long? OptionalLong(string v) => IsNone(v) ? null : Long(v);

    private static double? OptionalNumber(string v) => IsNone(v) ? null : Number(v);

    private static bool Bool(string v) => v.ToLowerInvariant() switch
    {
        "true" or "1" => true,
        "false" or "0" => false,
        _ => throw new FormatException($"'{v}' is not true or false"),
    };

    private static List<string> List(string v) =>
        v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
}
