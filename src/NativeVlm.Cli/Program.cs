using NativeVlm.Cli;

// The verbs of the console host, one line each: its options class (a [Verb]) and the command it runs.
// Errors exit 2 with a one-line reason; --help exits 0 (CommandLineHost).
return CommandLineHost.Run(args,
[
    VerbCommand.Of<TrainOptions>(TrainCommand.Run),
    VerbCommand.Of<CompareOptions>(CompareCommand.Run),
    VerbCommand.Of<GenerateOptions>(GenerateCommand.Run),
    VerbCommand.Of<MergeOptions>(MergeCommand.Run),
    VerbCommand.Of<StitchOptions>(StitchCommand.Run),
    VerbCommand.Of<InspectOptions>(InspectCommand.Run),
    VerbCommand.Of<DemoOptions>(DemoCommand.Run),
    VerbCommand.Of<BenchOptions>(BenchCommand.Run),
    VerbCommand.Of<DatasetOptions>(DatasetCommand.Run),
]);
