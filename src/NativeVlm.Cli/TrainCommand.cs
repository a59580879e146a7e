using CommandLine;
using CommandLine.Text;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Quantization;
using NativeVlm.Training;
using NativeVlm.Training.Dpo;
using NativeVlm.Training.Metrics;

namespace NativeVlm.Cli;

[Verb("train", HelpText = "Fine-tune a snapshot with DPO or SFT (LoRA/DoRA adapters, or full training of --train_modules), " +
                          "writing checkpoints and the final adapter (PEFT files) into --output_dir. Flags use TRL's names.")]
public sealed class TrainOptions
{
    [Usage(ApplicationAlias = "nativevlm")]
    public static IEnumerable<Example> Examples =>
    [
        UsageExample.Of("QLoRA DPO of SmolVLM-256M-Instruct with DoRA on all linear layers, on the GPU", new TrainOptions
        {
            Objective = TrainingObjective.Dpo, Model = "SmolVLM-256M-Instruct", Data = ["rlaif-v_formatted/data"], Split = "train[:6%]",
            OutputDir = "runs/dpo", Quant = BaseWeightQuantization.Nf4, UseDora = true, LoraTargetModules = "all-linear",
            PerDeviceTrainBatchSize = "2", GradientAccumulationSteps = "8", LearningRate = "5e-6", MaxSteps = "500", Device = "cuda",
        }),
        UsageExample.Of("Train a stitched model's connector alone on captions", new TrainOptions
        {
            Objective = TrainingObjective.Sft, Model = "stitched", Data = ["captions.json"], OutputDir = "runs/connector",
            TrainModules = "connector", LearningRate = "1e-4", MaxSteps = "1000",
        }),
    ];

    [Value(0, MetaName = "objective", Required = true, HelpText = "dpo (preference pairs, rlaif-v layout) or sft (the_cauldron layout, or image/caption JSON).")]
    // Nullable so that --help's examples print dpo, the enum's zero value, too; required, so set once parsed.
    public TrainingObjective? Objective { get; set; }

    [Option("model", Required = true, HelpText = "Snapshot folder: config.json, weights, tokenizer and processor files.")]
    public string Model { get; set; } = "";

    [Option("data", Required = true, Min = 1, HelpText = "Parquet file(s) or a Hugging Face dataset folder (sft also: image/caption JSON lists).")]
    public IEnumerable<string> Data { get; set; } = [];

    [Option("split", Default = "train", HelpText = "Training split, e.g. train or train[:90%].")]
    public string Split { get; set; } = "train";

    [Option("eval_split", HelpText = "Evaluation split (e.g. train[90%:]): metrics prefixed eval_ every eval_steps (default: none, no evaluation).")]
    public string? EvalSplit { get; set; }

    [Option("config", HelpText = "JSON file of training arguments by TRL name; flags given here override it (default: none).")]
    public string? Config { get; set; }

    [Option("resume", HelpText = "true: continue from the newest complete checkpoint in output_dir (default false).")]
    public bool? Resume { get; set; }

    [Option("resume_from", HelpText = "Continue from this checkpoint directory (default: none, a fresh start).")]
    public string? ResumeFrom { get; set; }

    [Option("strict", HelpText = "true: fail on the first bad data row instead of skipping and counting it (default false).")]
    public bool? Strict { get; set; }

    [Option("output_dir", HelpText = "Where checkpoints, the final adapter, metrics.jsonl, runs/ (TensorBoard) and the plot go. Required, here or in --config.")] public string? OutputDir { get; set; }
    [Option("per_device_train_batch_size", HelpText = "Preference pairs (dpo) or samples (sft) per micro-batch (default 8).")] public string? PerDeviceTrainBatchSize { get; set; }
    [Option("per_device_eval_batch_size", HelpText = "Pairs or samples per evaluation batch (default 8).")] public string? PerDeviceEvalBatchSize { get; set; }
    [Option("gradient_accumulation_steps", HelpText = "Micro-batches per optimizer step; the loss is divided by it (default 1).")] public string? GradientAccumulationSteps { get; set; }
    [Option("learning_rate", HelpText = "Peak AdamW learning rate (default 5e-5).")] public string? LearningRate { get; set; }
    [Option("num_train_epochs", HelpText = "Passes over the training split when max_steps is not set (default 3).")] public string? NumTrainEpochs { get; set; }
    [Option("max_steps", HelpText = "Optimizer steps to run; overrides num_train_epochs (default -1: from epochs).")] public string? MaxSteps { get; set; }
    [Option("lr_scheduler_type", HelpText = "linear, cosine, constant or constant_with_warmup (default linear).")] public string? LrSchedulerType { get; set; }
    [Option("warmup_ratio", HelpText = "Fraction of the optimizer steps spent warming up linearly from 0 (default 0).")] public string? WarmupRatio { get; set; }
    [Option("warmup_steps", HelpText = "Warm-up steps; overrides warmup_ratio when > 0 (default 0).")] public string? WarmupSteps { get; set; }
    [Option("max_grad_norm", HelpText = "Clip the global L2 norm of the gradients to this (default 1.0; 0: no clipping).")] public string? MaxGradNorm { get; set; }
    [Option("adam_beta1", HelpText = "AdamW beta1 (default 0.9).")] public string? AdamBeta1 { get; set; }
    [Option("adam_beta2", HelpText = "AdamW beta2 (default 0.999).")] public string? AdamBeta2 { get; set; }
    [Option("adam_epsilon", HelpText = "AdamW epsilon (default 1e-8).")] public string? AdamEpsilon { get; set; }
    [Option("weight_decay", HelpText = "AdamW decoupled weight decay (default 0).")] public string? WeightDecay { get; set; }
    [Option("logging_steps", HelpText = "Log metrics every this many optimizer steps (default 500).")] public string? LoggingSteps { get; set; }
    [Option("eval_steps", HelpText = "Evaluate on eval_split every this many optimizer steps (default: logging_steps).")] public string? EvalSteps { get; set; }
    [Option("save_steps", HelpText = "Write a checkpoint every this many optimizer steps (default 500).")] public string? SaveSteps { get; set; }
    [Option("save_total_limit", HelpText = "Most checkpoints kept, oldest removed first (default: all).")] public string? SaveTotalLimit { get; set; }
    [Option("seed", HelpText = "Seed of the data order, adapter initialisation and dropout (default 42).")] public string? Seed { get; set; }
    [Option("gradient_checkpointing", HelpText = "true: recompute each encoder and decoder layer in the backward instead of keeping its activations (default false).")] public bool? GradientCheckpointing { get; set; }
    [Option("bf16", HelpText = DeviceOption.Bf16Help)] public bool? Bf16 { get; set; }
    [Option("beta", HelpText = "DPO beta: the strength of the KL penalty towards the reference (default 0.1).")] public string? Beta { get; set; }
    [Option("loss_type", HelpText = "Comma-separated DPO losses (default sigmoid): sigmoid, hinge, ipo, exo_pair, nca_pair, robust, bco_pair, sppo_hard, aot, aot_pair, apo_zero, apo_down, sft.")] public string? LossType { get; set; }
    [Option("loss_weights", HelpText = "Comma-separated, one per loss_type (default: 1 each).")] public string? LossWeights { get; set; }
    [Option("label_smoothing", HelpText = "cDPO / robust label smoothing in [0, 0.5) (default 0).")] public string? LabelSmoothing { get; set; }
    [Option("rpo_alpha", HelpText = "Weight of the NLL loss on chosen completions added to the DPO loss (RPO; default: none).")] public string? RpoAlpha { get; set; }
    [Option("precompute_ref_log_probs", HelpText = "true: reference log-probs computed once before training and cached on disk, reused across epochs and runs (default false).")]
    public bool? PrecomputeRefLogProbs { get; set; }
    [Option("ref_log_probs_dir", HelpText = "Folder of the precompute_ref_log_probs cache (default: output_dir/ref_logps).")] public string? RefLogProbsDir { get; set; }
    [Option("max_length", HelpText = "Most tokens of a sample (dpo: prompt + completion); completions are cut to fit, image tokens never (default: no limit).")] public string? MaxLength { get; set; }
    [Option("max_prompt_length", HelpText = "dpo: most prompt tokens, image tokens included; cut from the left unless that cuts image tokens (default: no limit).")] public string? MaxPromptLength { get; set; }
    [Option("max_completion_length", HelpText = "dpo: most tokens of a completion, its eos included; cut at the end (default: no limit).")] public string? MaxCompletionLength { get; set; }
    [Option("assistant_only_loss", HelpText = "sft: true = loss on assistant turns only; false = whole text but image tokens (default false).")] public bool? AssistantOnlyLoss { get; set; }
    [Option("lora_r", HelpText = "LoRA rank (default 8).")] public string? LoraR { get; set; }
    [Option("lora_alpha", HelpText = "LoRA alpha; the adapter output is scaled by alpha / r (default 8).")] public string? LoraAlpha { get; set; }
    [Option("lora_dropout", HelpText = "Dropout on the adapters' input while training (default 0).")] public string? LoraDropout { get; set; }
    [Option("use_dora", HelpText = "true: DoRA (weight-decomposed LoRA) instead of plain LoRA (default false).")] public bool? UseDora { get; set; }
    [Option("lora_target_modules", HelpText = "Comma-separated module names (suffix match) or all-linear (default: none; dpo needs adapters).")] public string? LoraTargetModules { get; set; }
    [Option("train_modules", HelpText = "connector: full training of the connector, everything else frozen (default: none).")] public string? TrainModules { get; set; }
    [Option("quant", HelpText = "Base weights: nf4 (QLoRA, as bitsandbytes) or none (default none).")] public BaseWeightQuantization? Quant { get; set; }
    [Option("device", HelpText = DeviceOption.Help + " (default cpu)")] public string? Device { get; set; }

    /// <summary>
    /// The training arguments given as flags, by TRL name, as text for <see cref="TrainingArguments.Set"/>
    /// (the form a --config file's values take too): booleans true/false, --quant nf4/none.
    /// </summary>
    public IEnumerable<(string Name, string? Value)> ArgumentFlags =>
    [
        ("output_dir", OutputDir), ("per_device_train_batch_size", PerDeviceTrainBatchSize), ("per_device_eval_batch_size", PerDeviceEvalBatchSize),
        ("gradient_accumulation_steps", GradientAccumulationSteps), ("learning_rate", LearningRate), ("num_train_epochs", NumTrainEpochs),
        ("max_steps", MaxSteps), ("lr_scheduler_type", LrSchedulerType), ("warmup_ratio", WarmupRatio), ("warmup_steps", WarmupSteps),
        ("max_grad_norm", MaxGradNorm), ("adam_beta1", AdamBeta1), ("adam_beta2", AdamBeta2), ("adam_epsilon", AdamEpsilon),
        ("weight_decay", WeightDecay), ("logging_steps", LoggingSteps), ("eval_steps", EvalSteps), ("save_steps", SaveSteps),
        ("save_total_limit", SaveTotalLimit), ("seed", Seed), ("gradient_checkpointing", Text(GradientCheckpointing)), ("bf16", Text(Bf16)), ("beta", Beta),
        ("loss_type", LossType), ("loss_weights", LossWeights), ("label_smoothing", LabelSmoothing), ("rpo_alpha", RpoAlpha),
        ("precompute_ref_log_probs", Text(PrecomputeRefLogProbs)), ("ref_log_probs_dir", RefLogProbsDir), ("max_length", MaxLength), ("max_prompt_length", MaxPromptLength),
        ("max_completion_length", MaxCompletionLength), ("assistant_only_loss", Text(AssistantOnlyLoss)), ("lora_r", LoraR),
        ("lora_alpha", LoraAlpha), ("lora_dropout", LoraDropout), ("use_dora", Text(UseDora)), ("lora_target_modules", LoraTargetModules),
        ("train_modules", TrainModules), ("quant", Quant?.ToString().ToLowerInvariant()), ("device", Device),
    ];

    private static string? Text(bool? flag) => flag?.ToString().ToLowerInvariant();
}

/// <summary>
/// nativevlm train dpo|sft: arguments (config file, then flags) checked before any work; the model
/// loaded (NF4 base weights with --quant nf4); adapters created (or the chosen modules made trainable);
/// the data read through the sample builder into memory; the Trainer run with progress, metrics.jsonl
/// and TensorBoard sinks; the final weights written into output_dir.
/// </summary>
public static class TrainCommand
{
    public static int Run(TrainOptions options) => DataInputErrors.Report(() => Train(options));

    private static int Train(TrainOptions options)
    {
        TrainingArguments args = options.Config != null ? TrainingArguments.Load(options.Config) : new TrainingArguments();
        foreach ((string name, string? value) in options.ArgumentFlags)
        {
            if (value != null)
            {
                args.Set(name, value);
            }
        }
        args.Validate();
        if (options.Resume == true && options.ResumeFrom != null)
        {
            throw new ArgumentException("--resume and --resume_from exclude each other");
        }
        if (options.Objective == TrainingObjective.Sft && (args.MaxPromptLength != null || args.MaxCompletionLength != null))
        {
            throw new ArgumentException("max_prompt_length and max_completion_length are DPO limits; sft has max_length");
        }
        if (options.Objective == TrainingObjective.Dpo && args.LoraTargetModules.Count == 0)
        {
            throw new ArgumentException("lora_target_modules: dpo trains adapters (the reference is the model with them off)");
        }
        if (options.Objective == TrainingObjective.Sft && args.PrecomputeRefLogProbs)
        {
            throw new ArgumentException("precompute_ref_log_probs is a DPO setting: sft has no reference model");
        }

        BadRowPolicy policy = options.Strict == true
            ? BadRowPolicy.Strict
            : BadRowPolicy.SkipAndWarn(bad => Console.Error.WriteLine($"warning: skipped {bad} ({DatasetSummary.Describe(bad.Reason)})"));
        List<string> data = options.Data.ToList();

        using TrainingSession session = TrainingSession.Open(options.Model, args);
        TrainedWeights weights = session.Weights;
        Console.WriteLine($"model: {options.Model} ({args.Quant}, {args.Device}{(args.Bf16 ? ", bf16" : "")}); training {weights.NamedParameters.Count} tensors, " +
            $"{weights.Parameters.Sum(p => p.ElementCount):N0} parameters");

        if (options.Objective == TrainingObjective.Sft)
        {
            return Run(options, session, new SftObjective(session.Model), split => session.ReadSft(data, split, policy), prepare: null);
        }
        DpoTrainingObjective objective = session.CreateDpoObjective();
        ReferenceLogProbCache? references = objective.References;
        return Run(options, session, objective, split => session.ReadDpo(data, split, policy),
            references == null ? null : (train, eval) =>
            {
                objective.PrecomputeReferences(train);
                if (eval != null)
                {
                    objective.PrecomputeReferences(eval);
                }
                Console.WriteLine($"reference log-probs: {references.Computed} computed, {references.Reused} reused from {Path.GetFullPath(references.FilePath)}");
            });
    }

    /// <param name="prepare">Work on the data before training (the DPO reference log-probs' precompute), given the train and eval splits.</param>
    private static int Run<TBatch>(TrainOptions options, TrainingSession session, ITrainingObjective<TBatch> objective,
        Func<string, ITrainingData<TBatch>> read, Action<ITrainingData<TBatch>, ITrainingData<TBatch>?>? prepare)
    {
        TrainingArguments args = session.Arguments;
        TrainedWeights weights = session.Weights;
        ITrainingData<TBatch> train = read(options.Split);
        ITrainingData<TBatch>? eval = options.EvalSplit != null ? read(options.EvalSplit) : null;
        Console.WriteLine($"data: {train.Count} training samples" + (eval != null ? $", {eval.Count} eval samples" : ""));
        if (train.Count == 0)
        {
            throw new ArgumentException($"split {options.Split} of {string.Join(", ", options.Data)} gave no usable samples");
        }
        prepare?.Invoke(train, eval);
        string? resumeFrom = options.ResumeFrom;
        if (options.Resume == true)
        {
            resumeFrom = TrainingCheckpoint.NewestComplete(args.OutputDir, weights)
                ?? throw new ArgumentException($"--resume: {args.OutputDir} holds no complete checkpoint");
        }

        long microPerEpoch = (train.Count + args.PerDeviceTrainBatchSize - 1) / args.PerDeviceTrainBatchSize;
        long totalSteps = args.TotalSteps((microPerEpoch + args.GradientAccumulationSteps - 1) / args.GradientAccumulationSteps);
        Directory.CreateDirectory(args.OutputDir);
        using var progress = new ProgressReporter(totalSteps);
        using var jsonl = new MetricsJsonlWriter(args.OutputDir);
        using var tensorBoard = new TensorBoardWriter(args.OutputDir);
        var log = new CompositeTrainingLog(progress, jsonl, tensorBoard);
        Trainer<TBatch> trainer = session.CreateTrainer(objective, train, eval, log);
        TrainingOutcome outcome = trainer.Train(resumeFrom);
        Console.WriteLine($"trained {outcome.GlobalStep} steps; weights written to {Path.GetFullPath(args.OutputDir)} ({string.Join(", ", weights.Files)})");
        return 0;
    }
}
