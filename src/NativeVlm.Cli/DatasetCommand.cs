using System.Diagnostics;
using CommandLine;
using CommandLine.Text;
using NativeVlm.Batches;
using NativeVlm.Data;

namespace NativeVlm.Cli;

[Verb("dataset", HelpText = "Stream a dataset through the sample builder (decode and process images, chat template, tokenize, truncate) " +
                            "without loading weights, and print rows read, kept and skipped by reason, tokens and image tiles per sample.")]
public sealed class DatasetOptions
{
    [Usage(ApplicationAlias = "nativevlm")]
    public static IEnumerable<Example> Examples =>
    [
        UsageExample.Of("What DPO training would see of the first 6% of RLAIF-V", new DatasetOptions
        {
            Model = "SmolVLM-256M-Instruct", Data = ["rlaif-v_formatted/data"], Split = "train[:6%]", Objective = TrainingObjective.Dpo,
            MaxPromptLength = 1024, DryRun = true,
        }),
    ];

    [Option("model", Required = true, HelpText = "Snapshot folder: config.json, tokenizer.json, tokenizer_config.json (or chat_template.jinja/.json), " +
                                                 "preprocessor_config.json[, processor_config.json]. No weights are read.")]
    public string Model { get; set; } = "";

    [Option("data", Required = true, Min = 1, HelpText = "A parquet file or Hugging Face dataset folder, several parquet files, or (sft) image/caption JSON lists.")]
    public IEnumerable<string> Data { get; set; } = [];

    [Option("split", Default = "train", HelpText = "Split specification, e.g. train, train[:6%], train[10:20]+test.")]
    public string Split { get; set; } = "train";

    [Option("objective", Required = true, HelpText = "dpo (rlaif-v layout) or sft (the_cauldron layout, or image/caption JSON).")]
    // Nullable so that --help's example prints dpo, the enum's zero value, too; required, so set once parsed.
    public TrainingObjective? Objective { get; set; }

    // The sample settings carry the train verb's TRL names, so a dry run takes the flags of the run it previews.
    [Option("assistant_only_loss", HelpText = "sft: true = loss on assistant turns only; false = whole text but <image> tokens " +
                                             "(the stitched-model connector recipe; TRL's default) (default false).")]
    public bool? AssistantOnlyLoss { get; set; }

    [Option("max_length", HelpText = "Most tokens of a sample (dpo: prompt + a completion); completions are cut to fit, image tokens never (default: no limit).")]
    public int? MaxLength { get; set; }

    [Option("max_prompt_length", HelpText = "dpo: most prompt tokens, image tokens included; a longer prompt is cut from the left unless that cuts image tokens (default: no limit).")]
    public int? MaxPromptLength { get; set; }

    [Option("max_completion_length", HelpText = "dpo: most tokens of a completion (its eos included); longer ones are cut at the end (default: no limit).")]
    public int? MaxCompletionLength { get; set; }

    [Option("strict", HelpText = "true: fail on the first bad row instead of skipping and counting it (default false).")]
    public bool? Strict { get; set; }

    [Option("dry_run", HelpText = "true: read and count only; required, training is not part of this verb (default false).")]
    public bool? DryRun { get; set; }

    [Option("progress_every", Default = 1000, HelpText = "Report progress to stderr every N rows read (0: never).")]
    public int ProgressEvery { get; set; } = 1000;
}

/// <summary>
/// nativevlm dataset --dry_run: what training would see of a dataset, with the same sample builder.
/// Each skipped row is a warning on stderr naming its file and row; the counts go to stdout.
/// </summary>
public static class DatasetCommand
{
    public static int Run(DatasetOptions options) => DataInputErrors.Report(() => DryRun(options));

    private static int DryRun(DatasetOptions options)
    {
        if (options.DryRun != true)
        {
            throw new ArgumentException("dataset needs --dry_run: it reads and counts, it does not train");
        }
        if (options.ProgressEvery < 0)
        {
            throw new ArgumentException("--progress_every must be 0 or more");
        }
        SftLoss sftLoss = options.AssistantOnlyLoss == true ? Batches.SftLoss.AssistantTurns : Batches.SftLoss.WholeText;
        if (options.Objective == TrainingObjective.Sft && (options.MaxPromptLength != null || options.MaxCompletionLength != null))
        {
            throw new ArgumentException("--max_prompt_length and --max_completion_length are DPO limits; sft has --max_length");
        }
        var limits = new SampleLimits(options.MaxLength, options.MaxPromptLength, options.MaxCompletionLength);
        VlmProcessor processor = VlmProcessor.Load(options.Model);
        var builder = new SampleBuilder(processor, limits, sftLoss);
        List<string> data = options.Data.ToList();

        Console.WriteLine($"model: {options.Model} (image_seq_len {processor.Prompt.ImageSeqLen}, {processor.Prompt.Tokens.Image} id {processor.ImageTokenId}, " +
            $"eos id {processor.EosTokenId}, pad id {processor.PadTokenId}, template {processor.Template.Name})");
        Console.WriteLine($"data: {string.Join(", ", data)}, split {options.Split}");
        string objective = options.Objective == TrainingObjective.Dpo
            ? "dpo"
            : $"sft, loss on {(sftLoss == Batches.SftLoss.AssistantTurns ? "assistant turns" : "the whole text but image tokens")}";
        Console.WriteLine($"objective: {objective}; max_length {Limit(limits.MaxLength)}" +
            (options.Objective == TrainingObjective.Dpo
                ? $", max_prompt_length {Limit(limits.MaxPromptLength)}, max_completion_length {Limit(limits.MaxCompletionLength)}"
                : ""));

        var summary = new DatasetSummary();
        BadRowPolicy policy = options.Strict == true
            ? BadRowPolicy.Strict
            : BadRowPolicy.SkipAndWarn(bad => Console.Error.WriteLine($"warning: skipped {bad} ({DatasetSummary.Describe(bad.Reason)})"));
        var statistics = new SampleStatistics();
        var clock = Stopwatch.StartNew();
        long nextProgress = options.ProgressEvery;
        void Progress()
        {
            if (options.ProgressEvery > 0 && summary.RowsRead >= nextProgress)
            {
                Console.Error.WriteLine($"... {summary.RowsRead} rows read, {summary.RowsKept} kept ({clock.Elapsed.TotalSeconds:F0} s)");
                nextProgress = summary.RowsRead + options.ProgressEvery;
            }
        }
        Task reading = options.Objective == TrainingObjective.Dpo
            ? CountAsync(TrainingSamples.ReadDpoAsync(builder, data, options.Split, policy, summary), statistics.Add, Progress)
            : CountAsync(TrainingSamples.ReadSftAsync(builder, data, options.Split, policy, summary), statistics.Add, Progress);
        reading.GetAwaiter().GetResult();

        Console.WriteLine($"rows read: {summary.RowsRead}");
        Console.WriteLine($"rows kept: {summary.RowsKept}");
        Console.WriteLine($"rows skipped: {summary.RowsSkipped}");
        foreach ((BadRowReason reason, long count) in summary.SkippedByReason.OrderBy(pair => pair.Key))
        {
            Console.WriteLine($"  {DatasetSummary.Describe(reason)}: {count}");
        }
        string tokens = options.Objective == TrainingObjective.Dpo ? "tokens per sample (prompt + longer completion)" : "tokens per sample";
        Console.WriteLine($"{tokens}: {statistics.Tokens}");
        Console.WriteLine($"image tiles per sample: {statistics.Tiles}");
        return 0;
    }

    private static string Limit(int? value) => value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none";

    private static async Task CountAsync<T>(IAsyncEnumerable<T> samples, Action<T> add, Action progress)
    {
        await foreach (T sample in samples.ConfigureAwait(false))
        {
            add(sample);
            progress();
        }
        progress();
    }
}
